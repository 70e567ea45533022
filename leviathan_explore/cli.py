"""The ``leviathan-explore`` command: argument parsing only.

Each subcommand parses its arguments here and hands them to one library
function. Errors a user can cause exit with status 2 and one line on stderr
that names the bad value and what is allowed; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .config import TOKEN_REPRS, ConfigError
from .params import MATCHES


class CliError(Exception):
    """A user error found after parsing (bad file, missing data...): one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        # argparse quotes some values raw: escape line breaks and control characters to keep one line
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number_type(name: str, parse: type, kind: str, required: str, in_range, out_of_range: str):
    """An argparse ``type``: ``parse(text)`` when it is in range, else one line naming the value."""
    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}; {required} is required")
        if not in_range(value):
            raise argparse.ArgumentTypeError(f"{text!r} {out_of_range}")
        return value

    check.__name__ = check.__qualname__ = name  # argparse names the type by it
    return check


positive_int = _number_type("positive_int", int, "an integer", "a positive integer", lambda v: v >= 1,
                            "must be a positive integer (>= 1)")
non_negative_int = _number_type("non_negative_int", int, "an integer", "an integer >= 0", lambda v: v >= 0,
                                "must be an integer >= 0")
positive_float = _number_type("positive_float", float, "a number", "a positive number",
                              lambda v: v > 0 and v != float("inf"), "must be a positive finite number")


# ---- params -----------------------------------------------------------------------------------

def _add_params(sub) -> None:
    p = sub.add_parser("params", help="parameter allocation: dense vs iso-body vs isoparametric Leviathan",
                       description="Print where the parameters go for a dense configuration and its "
                                   "iso-body and isoparametric Leviathan counterparts.")
    p.add_argument("--preset", default=None, help="a named preset (default: paper-109m when no sizes are given)")
    p.add_argument("--vocab-size", type=positive_int)
    p.add_argument("--d-model", type=positive_int)
    p.add_argument("--n-layers", type=positive_int)
    p.add_argument("--n-heads", type=positive_int)
    p.add_argument("--tie", action="store_true", help="tie the dense input table to the output head")
    p.add_argument("--match-by", choices=["depth", "width", "ffn"], default="depth",
                   help="where the isoparametric Leviathan spends its freed budget (default: depth)")
    p.add_argument("--repr", choices=[r for r in TOKEN_REPRS if r != "table"], default="leviathan",
                   help="the token representation that replaces the table (default: leviathan; its neighbours: "
                        "factorized, codebooks, hashed)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run_params)


def _run_params(args) -> int:
    from .config import PRESETS, preset, preset_note
    from .params import comparison
    from .report import format_params_report

    name = args.preset or "paper-109m"
    overrides = {k: v for k, v in dict(vocab_size=args.vocab_size, d_model=args.d_model,
                                       n_layers=args.n_layers, n_heads=args.n_heads).items() if v is not None}
    if args.tie:
        overrides["tie_embeddings"] = True
    if name not in PRESETS:
        raise ConfigError("--preset", name, f"must be one of {sorted(PRESETS)}")
    dense = preset(name, **overrides)
    report = comparison(dense, by=args.match_by, repr=args.repr)
    note = preset_note(name) + (" (with overrides: the sizes above are not the preset's)" if overrides else "")
    if args.json:
        print(json.dumps({**report, "about": {"preset": name, "overrides": overrides, "note": note}}, indent=2))
    else:
        print(format_params_report(report, title=f"preset {name}" + (f" with {overrides}" if overrides else ""),
                                   note=note))
    return 0


# ---- bench ------------------------------------------------------------------------------------

def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="speed and memory: generator, training steps, inference",
                       description="Time nn.Embedding, the reference and the fast generators, then dense vs "
                                   "iso-body/isoparametric Leviathan training steps and inference, interleaved "
                                   "after warm-up; prints a table of ratios last.")
    bench_arguments(p)
    p.set_defaults(handler=_run_bench)


def bench_arguments(p: argparse.ArgumentParser) -> None:
    """The bench options (also used by benchmarks/bench.py, which builds no other subcommand)."""
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to run (default: cuda when available, else cpu)")
    p.add_argument("--quick", action="store_true", help="smaller batches and fewer repeats (CPU: under 2 minutes)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON to FILE")
    p.add_argument("--tokens", metavar="FILE", default=None,
                   help="an .npy file of token ids to use (default: the committed o200k sample, else Zipf)")
    p.add_argument("--repeats", type=positive_int, default=None, help="timed rounds per comparison")
    p.add_argument("--compile", action="store_true", help="torch.compile every decoder layer of every model")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU: PyTorch threads (default 1: stable timings on a shared machine)")


def _run_bench(args) -> int:
    from .bench import bench_command
    from .benchmark import TOKEN_SAMPLE as BENCH_TOKEN_SAMPLE  # the committed o200k ids, when present

    return bench_command(device=args.device, quick=args.quick, tokens_file=args.tokens, repeats=args.repeats,
                         compile=args.compile, threads=args.threads, json_file=args.json,
                         o200k_sample=BENCH_TOKEN_SAMPLE)


# ---- data -------------------------------------------------------------------------------------

def _add_data(sub) -> None:
    from .data.corpora import DEFAULT_HF_DATASET, SOURCES
    from .data.tokenizers import DEFAULT_TOKENIZER, TOKENIZER_NAMES

    p = sub.add_parser("data", help="build and inspect token shards",
                       description="Tokenise a corpus into uint32 shards (train.bin, val.bin, manifest.json).")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    data_sub.required = True
    b = data_sub.add_parser("build", help="tokenise a corpus into shards",
                            description="Tokenise a corpus into DIR with a progress bar, then print the "
                                        "token counts and tokens per second. Offline sources: python-stdlib "
                                        "(the embedded default), files, site-packages; online: hf.")
    b.add_argument("--source", default="python-stdlib", metavar="NAME",
                   help=f"one of {', '.join(SOURCES)} (default: python-stdlib)")
    b.add_argument("--glob", action="append", default=None, metavar="PATTERN",
                   help="--source files: .txt/.jsonl/.parquet files to read ('**' recurses); repeatable")
    b.add_argument("--dataset", default=None,
                   help=f"--source hf: a Hub dataset or a local dataset folder (default: {DEFAULT_HF_DATASET})")
    b.add_argument("--max-tokens", type=positive_int, default=None,
                   help="stop after N tokens, train + val (default: the whole corpus; 100M for hf)")
    b.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, metavar="NAME",
                   help=f"one of {', '.join(TOKENIZER_NAMES)} (default: {DEFAULT_TOKENIZER})")
    b.add_argument("--compact", type=positive_int, default=None, metavar="K",
                   help="keep the K most frequent training ids plus one unknown id (model vocabulary K+1)")
    b.add_argument("--val-fraction", type=positive_float, default=0.02,
                   help="fraction of documents held out for validation, in (0, 0.5] (default: 0.02)")
    b.add_argument("--seed", type=non_negative_int, default=0, help="document order and split seed (default: 0)")
    b.add_argument("--out", default=None, metavar="DIR", help="output directory (default: data/shards/SOURCE)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(handler=_run_data_build)
    i = data_sub.add_parser("info", help="print the summary of a data directory",
                            description="Print the manifest summary of a token data directory; checks the "
                                        "file sizes, and with --verify the content hash.")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--verify", action="store_true", help="recompute the sha256 content hash")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.set_defaults(handler=_run_data_info)


def _data_build_command(args, out: str) -> str:
    """The canonical command line of a build (recorded in the manifest; independent of argument order)."""
    import shlex

    parts = ["leviathan-explore", "data", "build", "--source", args.source]
    for pattern in args.glob or []:
        parts += ["--glob", pattern]
    for flag, value in (("--dataset", args.dataset), ("--max-tokens", args.max_tokens),
                        ("--tokenizer", args.tokenizer), ("--compact", args.compact),
                        ("--val-fraction", args.val_fraction), ("--seed", args.seed)):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts + ["--out", out])


def _run_data_build(args) -> int:
    from .data import build_corpus, describe_manifest

    out = args.out or f"data/shards/{args.source}"
    manifest = build_corpus(args.source, out, tokenizer=args.tokenizer, max_tokens=args.max_tokens,
                            glob=args.glob, dataset=args.dataset, compact=args.compact,
                            val_fraction=args.val_fraction, seed=args.seed, progress=not args.no_progress,
                            created_by=_data_build_command(args, out))
    build = manifest["build"]
    print(describe_manifest(manifest))
    print(f"wrote {out} in {build['seconds']:.1f} s: {build['tokens_per_s']:,.0f} tokens/s")
    return 0


def _run_data_info(args) -> int:
    from .data import describe_manifest, load_token_data

    data = load_token_data(args.dir, verify=args.verify)
    if args.json:
        print(json.dumps(data.manifest, indent=2))
    else:
        print(describe_manifest(data.manifest))
        if args.verify:
            print("content hash verified")
    return 0


# ---- train / compare --------------------------------------------------------------------------

def _add_training_options(p) -> None:
    p.add_argument("--preset", default="cpu-tiny", help="a named preset (default: cpu-tiny)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps (required unless --tokens is given)")
    p.add_argument("--tokens", type=positive_int, default=None,
                   help="train on about N tokens: steps = ceil(N / (batch * seq_len * grad_accum))")
    p.add_argument("--batch-size", type=positive_int, default=16, help="global sequences per micro-batch (16)")
    p.add_argument("--seq-len", type=positive_int, default=None, help="tokens per sequence (the preset's max_seq_len)")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per optimizer step (1)")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate (3e-3)")
    p.add_argument("--eval-every", type=positive_int, default=None, help="steps between evaluations (steps/6)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, help="steps between checkpoints (steps/3)")
    p.add_argument("--data", default=None,
                   help="token shards (default: data/shards/python-stdlib-compact, built from the embedded "
                        "corpus when absent)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads(p)


THREADS_HELP = ("PyTorch CPU threads (default: $LEVIATHAN_THREADS, else as many as cores left idle by other "
                "processes at start, at least 1; use 1 when another job shares the machine)")


def _add_threads(p) -> None:
    p.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)


def _apply_threads(args) -> int:
    from .threads import set_threads

    return set_threads(args.threads)  # recorded in each run's summary.json (hardware.threads)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model (dense or Leviathan) and write a run directory",
                       description="Train a dense or Leviathan model; writes config.json, metrics.jsonl, "
                                   "summary.json and checkpoints/ under --out. Under torchrun "
                                   "(torchrun --nproc_per_node N -m leviathan_explore.cli train ...) each "
                                   "rank takes its slice of the global batch.")
    p.add_argument("--arch", choices=["dense", *[r for r in TOKEN_REPRS if r != "table"]], required=True,
                   help="dense (the table), leviathan, or one of its neighbours: factorized, codebooks, hashed")
    p.add_argument("--match", choices=list(MATCHES), default=None,
                   help="Leviathan only: isoparam (the dense total, extra depth; default), isobody (the "
                        "dense body) or backbone (the revision's identical backbone, against a tied dense model)")
    p.add_argument("--match-by", choices=["depth", "width", "ffn"], default="depth",
                   help="where an isoparametric Leviathan spends its freed budget (default: depth)")
    p.add_argument("--tie", action="store_true", help="tie the dense table to the head (the reference for --match)")
    p.add_argument("--out", required=True, help="run directory, e.g. runs/NAME")
    _add_training_options(p)
    p.set_defaults(handler=_run_train)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="train a dense model and its matched Leviathan on the same data",
                       description="Train the preset's dense model and its Leviathan (isoparametric by "
                                   "default) with the same seed and data order, then print parameters, "
                                   "validation loss, bucket losses and tokens/s side by side, and a verdict.")
    p.add_argument("--match", choices=list(MATCHES), default="isoparam",
                   help="isoparam: same total, the savings spent on depth (the paper's first comparison; "
                        "default); isobody: same body, fewer parameters; backbone: the paper's revision, "
                        "a tied dense model against a Leviathan with the identical backbone and an untied head")
    p.add_argument("--match-by", choices=["depth", "width", "ffn"], default="depth",
                   help="isoparam only: where the Leviathan spends its freed budget (default: depth)")
    p.add_argument("--out", default=None, help="directory for the two runs (default: runs/compare-PRESET-STEPS)")
    _add_training_options(p)
    p.set_defaults(handler=_run_compare)


def _resolve_data_dir(data: str | None) -> str:
    """--data, or the default compact embedded corpus (built on first use)."""
    if data is not None:
        return data
    from .data.catalog import ensure_corpus

    try:
        return str(ensure_corpus(log=lambda line: print(line, file=sys.stderr, flush=True)))
    except FileNotFoundError as exc:  # under torchrun: ranks would race to build it
        raise CliError(str(exc)) from None


def _training_settings(args) -> dict:
    from .config import PRESETS
    from .training.config import TrainConfig

    if args.preset not in PRESETS:
        raise ConfigError("--preset", args.preset, f"must be one of {sorted(PRESETS)}")
    if (args.steps is None) == (args.tokens is None):
        raise CliError("give either --steps N or --tokens N (one of them)")
    if args.steps is not None and args.steps <= 0:
        raise ConfigError("--steps", args.steps, "must be a positive integer (>= 1)")
    seq_len = args.seq_len or TrainConfig(preset=args.preset).effective_seq_len
    steps = args.steps
    if args.tokens is not None:
        per_step = args.batch_size * seq_len * args.grad_accum
        steps = -(-args.tokens // per_step)
    return dict(preset=args.preset, steps=steps, batch_size=args.batch_size, seq_len=args.seq_len,
                grad_accum=args.grad_accum, lr=args.lr,
                eval_every=args.eval_every or max(1, steps // 6),
                checkpoint_every=args.checkpoint_every or max(1, steps // 3),
                log_every=max(1, min(10, steps // 20)),
                device=args.device, compile=args.compile, resume=args.resume, seed=args.seed,
                progress=not args.no_progress)


def _run_train(args) -> int:
    from .training import TrainConfig, TrainingDiverged, train

    settings = _training_settings(args)
    _apply_threads(args)
    if args.arch == "dense" and args.match is not None:
        raise CliError(f"--match {args.match} applies to --arch leviathan only")
    cfg = TrainConfig(arch=args.arch, match=args.match, match_by=args.match_by, tie_embeddings=args.tie,
                      data_dir=_resolve_data_dir(args.data), out_dir=args.out, **settings)
    try:
        summary = train(cfg)
    except TrainingDiverged as exc:
        raise CliError(str(exc))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        state = "finished" if summary["finished"] else f"stopped at step {summary['steps']}"
        loss = summary["final_val_loss"]
        print(f"{summary['name']}: {state}, {summary['tokens_seen']:,} tokens, val loss "
              f"{'-' if loss is None else f'{loss:.4f}'} (unigram entropy {summary['unigram_entropy']:.4f}), "
              f"{summary['mean_tokens_per_s'] or 0:,.0f} tokens/s on {summary['hardware']['threads']} thread(s); "
              f"run directory {args.out}")
    return 0 if summary["finished"] else 130 if summary.get("interrupted_by") else 0


def _run_compare(args) -> int:
    from .training import TrainingDiverged, compare, format_comparison

    settings = _training_settings(args)
    _apply_threads(args)
    preset_name, steps = settings.pop("preset"), settings.pop("steps")
    out = args.out or f"runs/compare-{preset_name}-{steps}"
    try:
        summaries = compare(preset_name, steps, _resolve_data_dir(args.data), out, match=args.match,
                            match_by=args.match_by, **settings)
    except TrainingDiverged as exc:
        raise CliError(str(exc))
    print(format_comparison(summaries), end="")
    print(f"runs in {out}/dense and {out}/leviathan")
    if len(summaries) == 2:
        from pathlib import Path

        from .analysis.interpretation import pair_verdict
        from .analysis.registry import seed_spread

        # the committed sweeps of this checkout measure how far two seeds of one model differ
        spread = seed_spread(Path(__file__).resolve().parents[1] / "results" / "sweeps")
        print()
        print(pair_verdict(*summaries, seed_spread=None if spread is None else spread["nats"]))
    if any(s.get("interrupted_by") for s in summaries):
        print("interrupted: rerun the same command with --resume to finish", file=sys.stderr)
        return 130
    return 0


# ---- sweep / fit ------------------------------------------------------------------------------

def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a scaling sweep: dense sizes, Leviathan matches, an LR search each",
                       description="Run every model of a sweep grid (format: leviathan_explore/analysis/"
                                   "sweep.py, results/sweeps/README.md) at each learning rate of its grid, "
                                   "same data order and schedule; finished runs are skipped, so rerunning "
                                   "resumes or extends the sweep. Writes OUT/runs/*, OUT/selected.json.")
    p.add_argument("grid", metavar="GRID.json", help="the sweep grid")
    p.add_argument("--data", required=True, help="token shards (leviathan-explore data build)")
    p.add_argument("--out", required=True, help="sweep directory, e.g. results/sweeps/NAME")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="processes sharing the sweep, each training whole models (default 1; on N cores, "
                        "N workers with --threads 1)")
    p.add_argument("--claim", action="store_true", help=argparse.SUPPRESS)  # set for each worker process
    _add_threads(p)
    p.set_defaults(handler=_run_sweep)


def _sweep_workers(args) -> int:
    """Start ``--workers`` processes on one sweep (each claims models) and wait for all of them."""
    from .analysis.sweep import wait_for_workers

    argv = [sys.executable, "-m", "leviathan_explore.cli", "sweep", args.grid, "--data", args.data,
            "--out", args.out, "--claim", "--threads", str(args.threads or 1)] + \
        (["--no-progress"] if args.no_progress else [])
    codes = wait_for_workers([argv + (["--no-progress"] if i and not args.no_progress else [])
                              for i in range(args.workers)])
    bad = [c for c in codes if c != 0]
    return bad[0] if bad else 0


def _run_sweep(args) -> int:
    from .analysis.sweep import SweepStopped, load_grid, run_sweep
    from .files import read_json
    from .training.runs import SELECTED

    if args.workers > 1:
        load_grid(args.grid)  # a bad grid is one line here, not one per worker
        code = _sweep_workers(args)
        if code:
            return code
        selected = read_json(Path(args.out) / SELECTED)
    else:
        _apply_threads(args)
        try:
            selected = run_sweep(args.grid, args.data, args.out, progress=not args.no_progress, claim=args.claim)
        except SweepStopped as exc:
            print(f"leviathan-explore sweep: {exc}", file=sys.stderr)
            return 130
        if args.claim:
            return 0  # the parent prints the merged choice
    for key, m in selected["models"].items():
        edge = "  (best lr at the grid's edge)" if m["lr_at_edge"] else ""
        print(f"{key}: lr {m['lr']:.3g}, val loss {m['val_loss']:.4f}{edge}")
    for key in selected.get("failed", {}):
        print(f"{key}: every learning rate diverged", file=sys.stderr)
    print(f"selected runs in {args.out}/selected.json; fit with: leviathan-explore fit {args.out}")
    return 0


def _add_fit(sub) -> None:
    p = sub.add_parser("fit", help="fit L(N) on dense runs and give each Leviathan run's effective size",
                       description="Fit L(N) = E + A*N^(-alpha) (and the pure power law, and L(C) in FLOPs) "
                                   "on the dense runs, with bootstrap intervals over runs; invert it for "
                                   "every Leviathan run: N_eff, N_eff/N and its interval. A sweep directory "
                                   "contributes its selected (best learning rate) runs.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run, runs or sweep directories")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples (1000)")
    p.add_argument("--level", type=positive_float, default=0.95, help="interval coverage in (0, 1) (0.95)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (0)")
    p.add_argument("--x", choices=["total", "non_embedding"], default="total",
                   help="the size N of the law: total parameters (the paper's) or body + head")
    p.set_defaults(handler=_run_fit)


def _run_fit(args) -> int:
    from .analysis.registry import load_for_fit
    from .analysis.scaling import analyze_runs, format_scaling_report

    if not args.level < 1:
        raise CliError(f"--level {args.level} must be in (0, 1)")
    from .analysis.interpretation import dense_law_problems, scaling_verdict

    report = analyze_runs(load_for_fit(*args.run_dirs), x=args.x, n_boot=args.n_boot, seed=args.seed,
                          level=args.level).to_dict()
    report["law_problems"] = dense_law_problems(report)
    report["law_determined"] = not report["law_problems"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_scaling_report(report))
        print()
        print(scaling_verdict(report))
    return 0


# ---- study ------------------------------------------------------------------------------------

def _add_study(sub) -> None:
    p = sub.add_parser("study", help="run a study (several sweeps from one plan) or print its report",
                       description="A study directory holds study.json: sweeps run in order, some learning rates "
                                   "fixed by rules that read earlier choices (leviathan_explore/analysis/study.py). "
                                   "Resumable: finished runs are never redone.")
    study_sub = p.add_subparsers(dest="study_command", metavar="ACTION", parser_class=_Parser)
    study_sub.required = True
    r = study_sub.add_parser("run", help="run or resume every sweep of the plan")
    r.add_argument("dir", metavar="DIR", help="the study directory (holds study.json)")
    r.add_argument("--workers", type=positive_int, default=None,
                   help="processes, one thread each, sharing the plan's runs (each trains whichever model "
                        "no other has claimed; default 2; --quick: 1, in this process)")
    r.add_argument("--walk", action="store_true", help=argparse.SUPPRESS)  # one worker of --workers N
    r.add_argument("--data-root", default=None, help=argparse.SUPPRESS)  # where a worker finds the corpora
    r.add_argument("--only", action="append", default=None, metavar="SWEEP", help="run only this sweep (repeatable)")
    r.add_argument("--quick", action="store_true",
                   help="the same plan shrunk to about a minute (tiny widths and steps), into --out")
    r.add_argument("--out", default=None, metavar="DIR", help="--quick: where to write (default: runs/NAME-quick)")
    r.set_defaults(handler=_run_study)
    rep = study_sub.add_parser("report", help="print the study's tables and verdict (Markdown)")
    rep.add_argument("dir", metavar="DIR")
    rep.add_argument("--json", metavar="FILE", default=None, help="also write every number as JSON to FILE")
    rep.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples of the fit (1000)")
    rep.set_defaults(handler=_run_study_report)


def _run_study(args) -> int:
    from .analysis.study import StudyWorkerFailed, load_plan, prepare_quick, run_study
    from .analysis.sweep import SweepStopped

    study_dir, data_root = Path(args.dir), None
    if args.quick:
        name = load_plan(args.dir).get("name", "study")
        study_dir = Path(args.out or f"runs/{name}-quick")
        prepare_quick(args.dir, study_dir)
        data_root = study_dir
    try:
        import torch

        torch.set_num_threads(1)
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        if args.walk:
            from .analysis.study import walk_study

            walk_study(study_dir, data_root=args.data_root, only=args.only, log=log)
            return 0
        run_study(study_dir, workers=args.workers or (1 if args.quick else 2), data_root=data_root, only=args.only,
                  log=log)
    except SweepStopped as exc:
        print(f"leviathan-explore study: {exc}", file=sys.stderr)
        return 130
    except StudyWorkerFailed as exc:
        print(f"leviathan-explore study: {exc}", file=sys.stderr)
        return 1
    print(f"study {study_dir} complete; report with: leviathan-explore study report {study_dir}")
    return 0


def _run_study_report(args) -> int:
    from .analysis import neighbours
    from .analysis.study import format_report, study_report
    from .training.runs import json_safe, write_json_atomic

    if neighbours.is_neighbours_study(args.dir):  # compared with another study's dense law
        report = neighbours.neighbours_report(args.dir, n_boot=args.n_boot)
        format_report = neighbours.format_report
    else:
        report = study_report(args.dir, n_boot=args.n_boot)
    if args.json:
        write_json_atomic(args.json, json_safe(report))
    print(format_report(report), end="")
    return 0


# ---- serve ------------------------------------------------------------------------------------

def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; allowed: 1-65535")
    return value


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve the interactive explorer (a Panel dashboard) in the browser",
                       description="Serve the dashboard: parameter allocation, anatomy of a token, live "
                                   "training, embedding geometry and scaling. Binds to localhost unless "
                                   "--address says otherwise; every resource is served locally.")
    p.add_argument("--port", type=_port, default=5006, help="port to listen on (default: 5006)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--allow-websocket-origin", action="append", default=None, metavar="HOST[:PORT]",
                   help="extra origin allowed to connect (repeatable), e.g. when behind a proxy")
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="runs directory read by the geometry and scaling tabs and written by the "
                        "train tab (default: runs/; the shipped demo is offered too)")
    p.add_argument("--show", action=argparse.BooleanOptionalAction, default=False,
                   help="open a browser tab (default: --no-show)")
    _add_threads(p)
    p.set_defaults(handler=_run_serve)


def _run_serve(args) -> int:
    import errno
    import socket

    from .dashboard.app import serve

    _apply_threads(args)
    try:
        serve(port=args.port, address=args.address, allow_websocket_origin=args.allow_websocket_origin,
              runs_dir=args.runs, show=args.show)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"--port {args.port} is already in use; choose another port") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL) or isinstance(exc, socket.gaierror):
            raise CliError(f"--address {args.address!r} cannot be bound on this machine") from None
        raise
    return 0


# ---- the parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="leviathan-explore",
                     description="Explore the Leviathan continuous token-embedding generator.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_params(sub)
    _add_bench(sub)
    _add_data(sub)
    _add_train(sub)
    _add_compare(sub)
    _add_sweep(sub)
    _add_fit(sub)
    _add_study(sub)
    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, CliError, OSError, ValueError) as exc:  # OSError: disk full, permissions, not a dir
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"leviathan-explore {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"leviathan-explore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

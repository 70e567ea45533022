"""A whole benchmark run: the machine, the three comparisons in order, the ratios; and the command.

``run_benchmarks`` returns a JSON-ready dict; ``report.format_report`` prints it with the
table of ratios last; ``bench_command`` is what `leviathan-explore bench` does with its
options.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import LeviathanConfig, preset
from .report import format_report, summary_rows, write_json
from .suites import BenchPlan, bench_generator, bench_inference, bench_training, fast_impls, make_plan, \
    native_build_seconds, token_ids
from .timing import matmul_peak



def hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device.type, "torch": torch.__version__, "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "cpu_model": _cpu_model()}
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = list(os.getloadavg())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, cuda=torch.version.cuda, gpu_memory_gb=props.total_memory / 2**30,
                    sm_count=props.multi_processor_count)
        try:
            import triton
            info["triton"] = triton.__version__
        except Exception:  # noqa: BLE001
            info["triton"] = None
    else:
        info["device_name"] = info["cpu_model"]
    return info



def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"



def _total_units(plan: BenchPlan, n_gen_rows: int, n_fast: int) -> int:
    timed = max(0, plan.warmup - 1) + plan.repeats  # the first and the measuring call are not counted
    return n_gen_rows * (2 + n_fast) * timed + len(plan.presets) * (3 * timed + 2 * (plan.warmup + plan.repeats))



def run_benchmarks(device: str = "auto", quick: bool = False, tokens_file: str | None = None,
                   repeats: int | None = None, compile: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print, plan: BenchPlan | None = None,
                   threads: int | None = None, *, o200k_sample: str | os.PathLike | None = None) -> dict[str, Any]:
    """All three comparisons; returns the JSON-ready results (``format_report`` prints them).

    ``plan`` replaces the sizes ``make_plan(device, quick, repeats, compile)`` would choose.
    Token ids: ``tokens_file``, else ``o200k_sample`` for o200k-sized vocabularies, else
    Zipf (``suites.token_ids``).
    On a CPU, PyTorch uses ``threads`` threads (default 1): on a shared machine several
    threads per op wait on each other and the timings scatter by 10x or more.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads} must be >= 1")
    previous_threads = torch.get_num_threads()
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(threads or 1)
    try:
        return _run_benchmarks(device, quick, tokens_file, repeats, compile, progress, log, plan, o200k_sample)
    finally:
        torch.set_num_threads(previous_threads)



def _run_benchmarks(device, quick, tokens_file, repeats, compile, progress, log, plan,
                    o200k_sample) -> dict[str, Any]:
    from ..kernels import default_impl

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} must be 'cpu', 'cuda' or 'auto'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is visible to PyTorch; use --device cpu")
    dev = torch.device(device)
    plan = plan or make_plan(device, quick, repeats, compile)
    t_start = time.perf_counter()
    results: dict[str, Any] = {"plan": asdict(plan), "hardware": hardware(dev), "errors": []}
    results["matmul_peak"] = peak = matmul_peak(dev, plan.quick)

    gen_rows = [(plan.gen_vocab, D, LeviathanConfig()) for D in plan.gen_widths]
    for name in plan.presets:
        cfg = preset(name)
        if (cfg.vocab_size, cfg.d_model, cfg.leviathan) not in gen_rows:
            gen_rows.append((cfg.vocab_size, cfg.d_model, cfg.leviathan))
    bar = _progress_bar(_total_units(plan, len(gen_rows), len(fast_impls(dev))), progress)
    results["generator"] = []
    for row, (V, D, lev) in enumerate(gen_rows):
        # the paper-size rows embed gen_positions ids; a preset's row, one training batch
        n = plan.gen_positions if row < len(plan.gen_widths) else plan.batch_size * plan.seq_len
        ids, source = token_ids(V, n, tokens_file, o200k_sample=o200k_sample)
        try:
            row = bench_generator(V, D, lev, ids, plan, dev, bar)
            row["token_source"] = source
            results["generator"].append(row)
            log(f"generator V={V} D={D}: " + ", ".join(
                f"{n} {e['embeddings_per_s']:.3g}/s" for n, e in row["impls"].items()))
        except Exception as exc:  # noqa: BLE001 - one failing comparison must not lose the others
            results["errors"].append(f"generator V={V} D={D}: {type(exc).__name__}: {exc}")
    # sections 2 and 3 use the path that matched the reference and was fastest for the preset's generator
    fastest = {(r["vocab_size"], r["d_model"], LeviathanConfig(**r["generator"])): r.get("fastest_matching")
               for r in results["generator"]}
    results["generator_impl"] = {"default_impl": default_impl(dev), "used": {},
                                 "native_build_s": native_build_seconds() if dev.type == "cpu" else None}
    results["training"], results["inference"] = [], []
    for name in plan.presets:
        cfg = preset(name)
        impl = fastest.get((cfg.vocab_size, cfg.d_model, cfg.leviathan)) or default_impl(dev)
        results["generator_impl"]["used"][name] = impl
        for section in ("training", "inference"):
            try:
                if section == "training":
                    row = bench_training(name, plan, dev, impl, tokens_file, bar, peak, o200k_sample=o200k_sample)
                else:
                    row = bench_inference(name, plan, dev, impl, tokens_file, bar, o200k_sample=o200k_sample)
                results[section].append(row)
                log(f"{section} {name}: " + ", ".join(
                    f"{k} {m['tokens_per_s']:.4g} tok/s" for k, m in row["models"].items()))
            except Exception as exc:  # noqa: BLE001
                results["errors"].append(f"{section} {name}: {type(exc).__name__}: {exc}")
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if bar is not None:
        bar.close()
    results["ratios"] = summary_rows(results)
    results["wall_time_s"] = time.perf_counter() - t_start
    if hasattr(os, "getloadavg"):
        results["hardware"]["load_average_end"] = list(os.getloadavg())
    return results



def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the GPU image may lack it; timing does not depend on it
        return None
    return tqdm(total=total, desc="bench", unit="call", leave=False)



def bench_command(*, device: str = "auto", quick: bool = False, tokens_file: str | None = None,
                  repeats: int | None = None, compile: bool = False, threads: int | None = None,
                  json_file: str | os.PathLike | None = None, o200k_sample: str | os.PathLike | None = None,
                  log: Callable[[str], None] | None = None) -> int:
    """What `leviathan-explore bench` does with its options (``cli.bench_arguments``): run every
    comparison (progress lines on stderr), record the command line, write ``json_file`` if given,
    print the report. Returns the exit status: 1 if a comparison failed, else 0.

    ``ValueError`` for a ``json_file`` that is a directory (before anything runs).
    """
    if json_file is not None and Path(json_file).is_dir():
        raise ValueError(f"--json {json_file} is a directory; give a file name")
    results = run_benchmarks(device=device, quick=quick, tokens_file=tokens_file, repeats=repeats, compile=compile,
                             threads=threads, log=log or (lambda line: print(line, file=sys.stderr)),
                             o200k_sample=o200k_sample)
    flags = [f"--device {device}"] + (["--quick"] if quick else []) + \
        ([f"--tokens {tokens_file}"] if tokens_file else []) + \
        ([f"--repeats {repeats}"] if repeats else []) + (["--compile"] if compile else []) + \
        ([f"--threads {threads}"] if threads else []) + \
        ([f"--json {json_file}"] if json_file else [])
    results["command"] = "leviathan-explore bench " + " ".join(flags)
    if json_file is not None:
        write_json(results, json_file)
    print(format_report(results))
    return 1 if results["errors"] else 0

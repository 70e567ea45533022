"""Train the small dense + Leviathan pair shipped in ``results/demo`` and export it.

    python scripts/make_demo.py            # ~10-20 min on two CPU cores

Trains the ``cpu-tiny`` dense model and its isoparametric Leviathan on the embedded
corpus (python-stdlib, vocabulary compacted to 4,096 ids) with the same seed and data
order (``training.compare``), then writes into ``results/demo``:

* ``dense/`` and ``leviathan/``: each run's ``summary.json``, ``metrics.jsonl`` and
  ``config.json`` (no checkpoints), read by the scaling tab and ``leviathan-explore fit``;
* ``embeddings.safetensors``: the trained generator, the dense table rows of the most
  frequent ids, the id map and the training counts (``analysis.embedding_sources.export_snapshot``),
  enough for the geometry and anatomy tabs without the checkpoints.

The full runs (with checkpoints) stay in ``--work`` (default ``runs/demo-source``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leviathan_explore.analysis.embedding_sources import SNAPSHOT_FILE, export_snapshot  # noqa: E402
from leviathan_explore.data import DEFAULT_CORPUS, ensure_corpus, load_token_data  # noqa: E402
from leviathan_explore.training import compare, load_run_model  # noqa: E402
from leviathan_explore.training.runs import CONFIG, METRICS, SUMMARY  # noqa: E402

RUN_FILES = (SUMMARY, METRICS, CONFIG)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--data", default=None,
                   help=f"token shards (default: the default corpus, {DEFAULT_CORPUS.path()}, built on first use)")
    p.add_argument("--work", default="runs/demo-source", help="where the full runs are trained")
    p.add_argument("--out", default=str(ROOT / "results" / "demo"))
    p.add_argument("--table-rows", type=int, default=1536, help="dense rows shipped (most frequent ids)")
    p.add_argument("--spline-init-std", type=float, default=None,
                   help="the generator's initial spline scale (default: LeviathanConfig's default); "
                        "the shipped demo was made with 0.05, the default before sqrt(8/d_seed)")
    args = p.parse_args(argv)

    data_dir = ensure_corpus(DEFAULT_CORPUS, path=args.data, progress=True, log=print)
    work, out = Path(args.work), Path(args.out)
    compare("cpu-tiny", args.steps, data_dir, work, batch_size=args.batch_size,
            eval_every=max(1, args.steps // 6), eval_batches=8, checkpoint_every=args.steps, log_every=5,
            resume=(work / "dense" / CONFIG).exists(), seed=0,
            model={} if args.spline_init_std is None else {"leviathan": {"spline_init_std": args.spline_init_std}})

    data = load_token_data(data_dir)
    lev, dense = load_run_model(work / "leviathan"), load_run_model(work / "dense")
    V = data.vocab_size
    if data.vocab_map is not None:
        tokenizer_ids = np.full(V, -1, dtype=np.int64)
        tokenizer_ids[:data.vocab_map.n_kept] = data.vocab_map.model_to_tokenizer
    else:
        tokenizer_ids = np.arange(V)
    export_snapshot(lev.generator, dense.embed_tokens.weight, tokenizer=data.tokenizer_name,
                    tokenizer_ids=tokenizer_ids, counts=data.token_counts(), unk_id=data.unk_id,
                    out_path=out / SNAPSHOT_FILE, n_table_rows=args.table_rows,
                    metadata={"description": f"shipped demo: cpu-tiny dense + isoparametric Leviathan, "
                                             f"{args.steps} steps on python-stdlib (4,096-id vocabulary)",
                              "command": " ".join(["python scripts/make_demo.py", *sys.argv[1:]])})
    for arch in ("dense", "leviathan"):
        (out / arch).mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            shutil.copyfile(work / arch / name, out / arch / name)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

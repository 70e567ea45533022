"""How the initial scale of the spline coefficients (S = 1 + Delta) changes training.

Trains the cpu-tiny iso-body Leviathan (and the isoparametric one at the chosen
scale) for 256 steps on the embedded corpus, one PyTorch thread, for several
``spline_init_std`` values, and writes results/init_scale/cpu-tiny.json.
This is the measurement behind LeviathanConfig's default ``sqrt(8 / d_seed)``
(0.5 at the CPU presets' d_seed = 32). About 10 minutes on two cores.

    python scripts/init_scale_experiment.py [--data DIR]   # default: the default corpus, built on first use
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from leviathan_explore.data import DEFAULT_CORPUS, ensure_corpus
from leviathan_explore.files import json_safe, write_json_atomic
from leviathan_explore.training import TrainConfig, train

SETTINGS = [("isobody", 0.05), ("isobody", 0.2), ("isobody", 0.5), ("isobody", 1.0), ("isoparam", 0.5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help=f"token shards (default: {DEFAULT_CORPUS.path()}, built on first use)")
    parser.add_argument("--out", default="results/init_scale/cpu-tiny.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_dir = str(args.data or ensure_corpus(DEFAULT_CORPUS, progress=True, log=print))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, match, std in [("dense", None, None)] + [("leviathan", m, s) for m, s in SETTINGS]:
            cfg = TrainConfig(arch=arch, preset="cpu-tiny", match=match, steps=256, batch_size=8, seq_len=128,
                              lr=0.0125, warmup_steps=16, min_lr_ratio=0.1, eval_every=256, eval_batches=16,
                              checkpoint_every=1000, data_dir=data_dir, device="cpu", progress=False,
                              out_dir=os.path.join(tmp, f"{arch}-{match}-{std}"),
                              model={} if std is None else {"leviathan": {"spline_init_std": std}})
            s = train(cfg)
            rows.append(dict(arch=arch, match=match, spline_init_std=std, params=s["params"]["total"],
                             n_layers=s["params"]["n_layers"], val_loss=s["final_val_loss"]))
            print(f"{arch:9s} {str(match):8s} spline_init_std={std}  params={rows[-1]['params']:,}  "
                  f"val_loss={rows[-1]['val_loss']:.4f}", flush=True)
    payload = dict(command="python scripts/init_scale_experiment.py", preset="cpu-tiny", steps=256,
                   batch_size=8, seq_len=128, lr=0.0125, torch=torch.__version__, threads=1, rows=rows)
    write_json_atomic(args.out, json_safe(payload))  # a diverged run's NaN loss as null


if __name__ == "__main__":
    main()

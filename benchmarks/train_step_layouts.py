"""A dense CPU training step with and without this project's two CPU layouts, side by side in one process.

    python benchmarks/train_step_layouts.py                 # cpu-16k and cpu-tiny, 15 rounds each

The four variants: the general loss loop (``loss._chunks``, the GPU-shaped one) or the CPU
float32 layout (``loss._cpu_float32_chunks``), each with AdamW's ``foreach`` or ``fused`` step.
Same model, batch (8 x 128 Zipf ids) and one torch thread; the variants take turns each round,
so machine drift hits them alike. Prints the median and fastest step of each.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

import leviathan_explore.loss as L
from leviathan_explore.bench.suites import _build, _preset_for, zipf_token_ids
from leviathan_explore.bench.timing import interleaved_medians

VARIANTS = {"general loss, foreach AdamW": (False, False), "CPU loss, foreach AdamW": (True, False),
            "general loss, fused AdamW": (False, True), "CPU loss, fused AdamW (default)": (True, True)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["cpu-16k", "cpu-tiny"])
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(1)
    cpu_layout = L._cpu_float32_chunks
    try:
        for name in args.presets:
            cfg = _preset_for(name, 128)
            ids = zipf_token_ids(cfg.vocab_size, 8 * 129).view(8, 129)
            x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
            runs = {}
            for key, (loss_cpu, fused) in VARIANTS.items():
                model = _build(cfg, torch.device("cpu"), "native", False)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0,
                                        **({"fused": True} if fused else {"foreach": True}))
                runs[key] = (model, opt, loss_cpu)

            def step(key: str) -> None:
                model, opt, loss_cpu = runs[key]
                L._cpu_float32_chunks = cpu_layout if loss_cpu else L._chunks
                model(x, y).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            times = interleaved_medians({key: partial(step, key) for key in runs}, torch.device("cpu"), 2,
                                        args.rounds)
            base = times[next(iter(VARIANTS))]["median_s"]
            for key, t in times.items():
                med = t["median_s"]
                print(f"{name:9s} {key:32s} median {med * 1e3:7.1f} ms  fastest {t['min_s'] * 1e3:7.1f} ms  "
                      f"{med / base:.2f}x the first", flush=True)
    finally:
        L._cpu_float32_chunks = cpu_layout


if __name__ == "__main__":
    main()

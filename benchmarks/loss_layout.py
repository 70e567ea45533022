"""The fused loss's two CPU layouts, side by side in one process (one thread).

    python benchmarks/loss_layout.py

``general``: the GPU-shaped loop (``h @ w.T`` on the [V, D] weight, a fresh [c, V] softmax
per chunk, ``grad_W += (p - y).T @ h``). ``cpu``: ``loss._cpu_float32_chunks`` (the weight
transposed once, one reused buffer with softmax in place, grad_W accumulated transposed).
Both at the default chunk, 1,024 positions, forward + backward, interleaved, median of 15;
each cell is the fraction of the measured float32 matmul rate (n = 1,024) that the head's
6 N V D FLOPs reach, and the last column is cpu / general time. Then the ``cpu`` layout's
parts for one chunk at V = 16,385, D = 64 (its three GEMMs in GFLOP/s and the in-place
softmax per row), beside the n = 1,024 square GEMM, taking turns.
"""

from __future__ import annotations

import argparse

import torch

from leviathan_explore import loss as L
from leviathan_explore.bench.timing import interleaved_medians
from loss_chunk import matmul_rate  # the sibling script's (run as python benchmarks/loss_layout.py)

CPU = torch.device("cpu")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--positions", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(1)
    peak = matmul_rate()
    print(f"float32 matmul rate {peak / 1e9:.0f} GFLOP/s (1 thread)")
    print("V       D    chunk  general   cpu   cpu/general time")
    for V, D in [(4097, 64), (16385, 64), (16385, 128), (65537, 64)]:
        torch.manual_seed(0)
        h = torch.randn(args.positions, D)
        w = 0.02 * torch.randn(V, D)
        t = torch.randint(0, V, (args.positions,))
        chunk = L.default_loss_chunk(V, D, "cpu")
        fns = {}
        for name, impl in (("general", L._chunks), ("cpu", L._cpu_float32_chunks)):
            def run(impl=impl):
                losses = torch.empty(args.positions)
                gh, gw = torch.empty_like(h), torch.zeros_like(w)
                impl(h, w, t, chunk, losses, gh, gw)
            fns[name] = run
        med = {k: m["median_s"] for k, m in interleaved_medians(fns, CPU, 0, args.repeats).items()}
        flops = 6 * args.positions * V * D
        print(f"{V:<7} {D:<4} {chunk:>5}  {flops / med['general'] / peak:7.2f} {flops / med['cpu'] / peak:5.2f}"
              f"   {med['cpu'] / med['general']:.2f}", flush=True)
    parts(args.repeats)


def parts(repeats: int, V: int = 16385, D: int = 64) -> None:
    c = L.default_loss_chunk(V, D, "cpu")
    h, wT = torch.randn(c, D), 0.02 * torch.randn(D, V)
    w = wT.T.contiguous()
    p, gh, gwT = torch.empty(c, V), torch.empty(c, D), torch.zeros(D, V)
    a, b, out = torch.randn(1024, 1024), torch.randn(1024, 1024), torch.empty(1024, 1024)
    ops = {"logits  h @ wT      [c,D]x[D,V]": (lambda: torch.mm(h, wT, out=p), 2 * c * D * V),
           "softmax in place (per row)": (lambda: torch.ops.aten._softmax.out(p, -1, False, out=p), None),
           "grad_h  (p-y) @ w   [c,V]x[V,D]": (lambda: torch.mm(p, w, out=gh), 2 * c * D * V),
           "grad_WT += h.T @ (p-y) [D,c]x[c,V]": (lambda: gwT.addmm_(h.T, p), 2 * c * D * V),
           "square GEMM n = 1,024": (lambda: torch.mm(a, b, out=out), 2 * 1024 ** 3)}
    times = interleaved_medians({k: fn for k, (fn, _) in ops.items()}, CPU, 0, repeats * 2)
    print(f"\none chunk of the cpu layout, V = {V}, D = {D}, c = {c} (median of {repeats * 2}):")
    for k, (_, flops) in ops.items():
        med = times[k]["median_s"]
        rate = f"{flops / med / 1e9:6.1f} GFLOP/s" if flops else f"{med / c * 1e6:6.1f} us/row"
        print(f"  {k:36s} {med * 1e3:7.3f} ms  {rate}")


if __name__ == "__main__":
    main()

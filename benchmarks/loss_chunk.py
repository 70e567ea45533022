"""The fused loss (output head + cross-entropy, forward and backward) against its chunk size on a CPU.

    python benchmarks/loss_chunk.py            # one thread; prints the fraction of the measured
                                               # float32 matmul rate each chunk size reaches

Used to choose ``kernels.default_loss_chunk`` on CPUs: 1,024 positions, the head's
6 N V D FLOPs, best of 5 repeats, each row one (V, D), each column a chunk size.
"""

from __future__ import annotations

import argparse
import time

import torch

from leviathan_explore.loss import default_loss_chunk, fused_linear_cross_entropy


def matmul_rate(n: int = 1024, repeats: int = 8) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--positions", type=int, default=1024)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_rate()
    print(f"float32 matmul rate {peak / 1e9:.0f} GFLOP/s ({args.threads} thread(s))")
    chunks = (64, 128, 256, 512, 1024)
    print("V       D    " + "  ".join(f"{c:>5}" for c in chunks) + "  default")
    for V, D in [(4097, 64), (16385, 64), (16385, 128), (16385, 256), (32769, 64), (32769, 128)]:
        h = torch.randn(args.positions, D, requires_grad=True)
        w = (0.02 * torch.randn(V, D)).requires_grad_()
        t = torch.randint(0, V, (args.positions,))
        flops = 6 * args.positions * V * D
        cells = []
        for chunk in chunks:
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                fused_linear_cross_entropy(h, w, t, chunk).backward()
                best = min(best, time.perf_counter() - t0)
                h.grad = w.grad = None
            cells.append(f"{flops / best / peak:5.2f}")
        print(f"{V:<7} {D:<4} " + "  ".join(cells) + f"  {default_loss_chunk(V, D, 'cpu')}", flush=True)


if __name__ == "__main__":
    main()

"""Timing and memory of benchmark candidates.

Candidates are called interleaved (A, B, C, A, B, C, ...) after warm-up, timed with CUDA
events on a GPU and ``perf_counter`` on a CPU, and summarised by the median over
repeats. Memory: the CUDA peak above what was allocated before a step, or on a CPU the
tensors autograd saved between forward and backward (``saved_activation_mb``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)



def time_once(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes: CUDA events on a GPU, perf_counter on a CPU."""
    if device.type == "cuda":
        _sync(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0



def interleaved_medians(fns: dict[str, Callable[[], Any]], device: torch.device, warmup: int,
                        repeats: int, progress=None) -> dict[str, dict[str, float]]:
    """Call every fn ``warmup`` times, then time ``repeats`` rounds of one call each; median and spread."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            if progress is not None:
                progress.update(1)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_once(fn, device))
            if progress is not None:
                progress.update(1)
    return {name: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)}
            for name, ts in times.items()}



def _param_storages(modules) -> set[int]:
    return {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}




@dataclass
class Candidate:
    """One thing to time: ``finish(forward())`` is a step (backward and optimizer step in ``finish``)."""

    forward: Callable[[], torch.Tensor]
    finish: Callable[[torch.Tensor], None]

    last: torch.Tensor | None = None  # the latest output, detached

    def step(self) -> None:
        out = self.forward()
        self.finish(out)
        self.last = out.detach()



def saved_activation_mb(candidate: Candidate, exclude: set[int]) -> float:
    """Run one step; MB of distinct tensors autograd saved in its forward (parameters excluded).

    The CPU stand-in for peak memory: what a step holds between forward and backward.
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in exclude:
            storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = candidate.forward()
    candidate.finish(out)
    candidate.last = out.detach()
    return sum(storages.values()) / 2**20



def measure_step(candidate: Candidate, device: torch.device, exclude: set[int]) -> dict[str, float]:
    """One (warm) step, measuring memory: CUDA peak above the start, or on CPU autograd's saved tensors."""
    if device.type == "cuda":
        return {"peak_mb": cuda_peak_mb(candidate.step, device)}
    return {"saved_mb": saved_activation_mb(candidate, exclude)}



def first_calls(candidates: dict[str, Candidate], errors: dict[str, str], device: torch.device,
                exclude: set[int], memory: dict[str, dict[str, float]],
                after: Callable[[str], None] | None = None) -> dict[str, Candidate]:
    """Call each candidate once, then measure its memory in a warm step (``memory[name]``).

    ``after(name)`` runs right after that step (to read its outputs and gradients).
    Candidates that raise (a Triton compile error, out of memory) are left out and
    reported in ``errors``. On a CPU the first call itself measures: saved tensors do
    not depend on warm-up, and CPU steps are slow.
    """
    runnable = {}
    for name, cand in candidates.items():
        try:
            if device.type == "cuda":
                cand.step()  # compiles and autotunes outside the measured peak
            memory[name] = measure_step(cand, device, exclude)
            if after is not None:
                after(name)
            runnable[name] = cand
        except Exception as exc:  # noqa: BLE001 - a failing path (a Triton compile error, OOM) is reported
            errors[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    return runnable



def cuda_peak_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """MB allocated at the peak of one call of ``fn`` above what was allocated before it."""
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20



def matmul_peak(device: torch.device, quick: bool) -> dict[str, Any]:
    """Measured matmul rate: bf16 8192^3 on CUDA, float32 on CPU (the MFU denominator)."""
    if device.type == "cuda":
        n, dtype, reps = 8192, torch.bfloat16, 10
    else:
        n, dtype, reps = (1024 if quick else 2048), torch.float32, 3
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2 if device.type == "cpu" else 3):
        a @ b
    ts = [time_once(lambda: a @ b, device) for _ in range(reps)]
    t = statistics.median(ts)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "tflops": 2 * n**3 / t / 1e12}

"""Speed and memory of the generator, training steps and inference (``leviathan-explore bench``).

Three comparisons, each running its candidates in one process, interleaved
(A, B, C, A, B, C, ...) after warm-up, timed with CUDA events on a GPU and
``perf_counter`` on a CPU, and summarised by the median over repeats:

1. the generator alone, forward + backward: ``nn.Embedding`` against the reference
   generator and each fast path, embeddings per second and memory, at V = 200,019
   and D in {512, 1024} (the paper's generator settings), and at the CPU preset;
2. full training steps (forward, backward, AdamW): dense against iso-body and
   isoparametric Leviathan, tokens per second, memory, the dense model's FLOP
   utilisation and the generator's FLOP floor;
3. inference forward passes with the generator's table cache.

``run_benchmarks`` returns a JSON-ready dict; ``format_report`` prints it with the
table of ratios last. GPU steps run under bf16 autocast; CPU steps in float32.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .config import LeviathanConfig, ModelConfig, preset
from .generator import LeviathanGenerator
from .model import TransformerLM
from .params import isobody_match, isoparametric_match, layer_params, real_param_count
from .report import format_table

GEN_VOCAB = 200_019
GEN_WIDTHS = (512, 1024)
# Real o200k ids of Python source (benchmarks/make_token_sample.py); used when present.
TOKEN_SAMPLE = Path(__file__).resolve().parent.parent / "benchmarks" / "o200k_code_sample.npy"
ZIPF_EXPONENT = 1.1
# A fast path must match the reference this closely (norm-relative, float32) to be chosen.
MATCH_TOLERANCE = 1e-5


@dataclass(frozen=True)
class BenchPlan:
    """Sizes of one benchmark run (``make_plan``)."""

    device: str
    quick: bool
    gen_positions: int          # ids per generator step
    gen_widths: tuple[int, ...]
    presets: tuple[str, ...]    # training and inference comparisons
    batch_size: int
    seq_len: int
    infer_batch: int
    warmup: int
    repeats: int
    compile: bool = False
    gen_vocab: int = GEN_VOCAB


def make_plan(device: str, quick: bool, repeats: int | None = None, compile: bool = False) -> BenchPlan:
    """GPU: the issue's 64 x 512 tokens at paper-109m and paper-410m; CPU: cpu-small (quick: cpu-tiny)."""
    if device == "cuda":
        plan = BenchPlan(device, quick, gen_positions=8192 if quick else 64 * 512, gen_widths=GEN_WIDTHS,
                         presets=("paper-109m",) if quick else ("paper-109m", "paper-410m"),
                         batch_size=16 if quick else 64, seq_len=512, infer_batch=4 if quick else 16,
                         warmup=2 if quick else 3, repeats=5 if quick else 10, compile=compile)
    else:
        plan = BenchPlan(device, quick, gen_positions=128 if quick else 1024, gen_widths=GEN_WIDTHS,
                         presets=("cpu-tiny", "cpu-16k") if quick else ("cpu-tiny", "cpu-16k", "cpu-small"),
                         batch_size=8 if quick else 16, seq_len=128,
                         infer_batch=4 if quick else 8, warmup=1 if quick else 2, repeats=3 if quick else 5,
                         compile=compile)
    if repeats is not None:
        plan = BenchPlan(**{**asdict(plan), "repeats": repeats})
    return plan


# ---- token ids ----------------------------------------------------------------------------------

def zipf_token_ids(vocab_size: int, n: int, seed: int = 0, exponent: float = ZIPF_EXPONENT) -> torch.Tensor:
    """n ids whose frequencies follow rank^-exponent, ranks mapped to ids by a fixed permutation."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, vocab_size + 1, dtype=torch.float64).pow(-exponent)
    ranks = torch.multinomial(weights, n, replacement=True, generator=gen)
    return torch.randperm(vocab_size, generator=gen)[ranks]


def token_ids(vocab_size: int, n: int, tokens_file: str | os.PathLike | None = None,
              seed: int = 0) -> tuple[torch.Tensor, str]:
    """n token ids for benchmarks (int64, CPU) and where they came from.

    In order: ``tokens_file`` (an .npy of ids), the committed o200k sample of Python
    source when ``vocab_size`` is o200k's, else a Zipf sample. Ids are tiled when the
    source is shorter than n.
    """
    path = Path(tokens_file) if tokens_file is not None else None
    if path is None and vocab_size == GEN_VOCAB and TOKEN_SAMPLE.exists():
        path = TOKEN_SAMPLE
    if path is not None:
        import numpy as np

        if not path.exists():
            raise FileNotFoundError(f"--tokens {path}: no such file; give an .npy file of token ids")
        ids = torch.from_numpy(np.load(path).astype(np.int64).reshape(-1))
        if ids.numel() == 0 or int(ids.min()) < 0:
            raise ValueError(f"--tokens {path}: needs non-negative token ids, got {ids.numel()} ids")
        if int(ids.max()) < vocab_size:
            reps = -(-n // ids.numel())
            return ids.repeat(reps)[:n], f"file:{path.name}"
        if tokens_file is not None:
            raise ValueError(f"--tokens {path}: id {int(ids.max())} is outside the vocabulary [0, {vocab_size})")
    return zipf_token_ids(vocab_size, n, seed), f"zipf(exponent={ZIPF_EXPONENT})"


# ---- timing and memory ------------------------------------------------------------------------

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


# ---- FLOP accounting ----------------------------------------------------------------------------

def matmul_params(cfg: ModelConfig) -> int:
    """Parameters used in matrix products per token: every block's linear maps and the head."""
    return cfg.n_layers * (layer_params(cfg) - 2 * cfg.d_model) + cfg.vocab_size * cfg.d_model


def train_step_flops(cfg: ModelConfig, tokens: int, seq_len: int) -> float:
    """6 x matmul params x tokens + attention 12 L D T per token (PaLM's count; causal mask not discounted)."""
    return 6.0 * matmul_params(cfg) * tokens + 12.0 * cfg.n_layers * cfg.d_model * seq_len * tokens


def generator_flops_per_id(d_model: int, lev: LeviathanConfig, reference: bool = False) -> float:
    """Forward FLOPs of the generator for one id (an estimate; x3 for forward + backward).

    Seed projection 2 M d^2 and its layer norm and sigmoid ~10 M d; stage 3 with three
    active basis functions 2*3 M d r plus ~3 M d r for the log-magnitude product
    (reference: the dense basis, 2 M d kappa r); projection 2 M r D.
    """
    M, d, r, kappa = lev.n_modes, lev.d_seed, lev.rank, lev.n_knots
    modes = (2 * kappa if reference else 6) * M * d * r + 3 * M * d * r
    return 2.0 * M * d * d + 10.0 * M * d + modes + 2.0 * M * r * d_model


# ---- 1. the generator alone --------------------------------------------------------------------

def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def fast_impls(device: torch.device) -> list[str]:
    from . import modes_cpu
    from .kernels import triton_available
    native = ["native"] if device.type == "cpu" and modes_cpu.available() else []
    return ["sparse", "fused"] + native + (["triton"] if triton_available(device) else [])


def native_build_seconds() -> float | None:
    """Seconds to build the CPU kernel from scratch (into an empty cache), as a first run pays them."""
    import tempfile

    from . import modes_cpu

    if not modes_cpu.available():
        return None
    source = (Path(modes_cpu.__file__).parent / "csrc" / "modes.c").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("LEVIATHAN_CACHE")
        os.environ["LEVIATHAN_CACHE"] = tmp
        try:
            t0 = time.perf_counter()
            modes_cpu._build(source)
            return time.perf_counter() - t0
        finally:
            if old is None:
                os.environ.pop("LEVIATHAN_CACHE", None)
            else:
                os.environ["LEVIATHAN_CACHE"] = old


def bench_generator(vocab_size: int, d_model: int, lev: LeviathanConfig, ids: torch.Tensor,
                    plan: BenchPlan, device: torch.device, progress=None) -> dict[str, Any]:
    """Forward + backward of nn.Embedding, the reference generator and each fast path on ``ids``.

    Every generator path shares one set of weights; its output and every parameter
    gradient are compared with the reference's (norm-relative error).
    """
    torch.manual_seed(0)
    table = nn.Embedding(vocab_size, d_model).to(device)
    gen = LeviathanGenerator(vocab_size, d_model, lev).to(device)
    ids = ids.to(device)
    grad_out = torch.randn(*ids.shape, d_model, device=device)

    def candidate(module: nn.Module, impl: str | None) -> Candidate:
        def forward() -> torch.Tensor:
            if impl is not None:
                gen.impl = impl
            module.zero_grad(set_to_none=True)
            return module(ids)
        return Candidate(forward, lambda out: out.backward(grad_out))

    candidates = {"embedding": candidate(table, None)}
    candidates.update({impl: candidate(gen, impl) for impl in ["reference"] + fast_impls(device)})
    result: dict[str, Any] = {"vocab_size": vocab_size, "d_model": d_model, "generator": asdict(lev),
                              "positions": int(ids.numel()), "distinct_ids": int(torch.unique(ids).numel()),
                              "impls": {}, "errors": {}}
    outputs = {}

    def keep_results(name: str) -> None:  # the output and gradients of the measuring step
        if name != "embedding":
            outputs[name] = (candidates[name].last, {n: p.grad.detach().clone() for n, p in gen.named_parameters()})

    runnable = first_calls(candidates, result["errors"], device, _param_storages([table, gen]), result["impls"],
                           after=keep_results)
    timings = interleaved_medians({n: c.step for n, c in runnable.items()}, device,
                                  max(0, plan.warmup - 1), plan.repeats, progress)
    for name, entry in result["impls"].items():
        entry.update(timings[name], embeddings_per_s=ids.numel() / timings[name]["median_s"])
        if name in outputs and "reference" in outputs:
            ref_out, ref_grads = outputs["reference"]
            out, grads = outputs[name]
            entry["rel_err_forward"] = _rel_err(out, ref_out)
            entry["rel_err_grads"] = max(_rel_err(grads[n], ref_grads[n]) for n in ref_grads)
    matching = [n for n in fast_impls(device) if n in result["impls"] and "reference" in result["impls"]
                and max(result["impls"][n]["rel_err_forward"], result["impls"][n]["rel_err_grads"])
                <= MATCH_TOLERANCE]
    if matching:
        fastest = min(matching, key=lambda n: result["impls"][n]["median_s"])
        result["fastest_matching"] = fastest
        result["speedup_vs_reference"] = result["impls"]["reference"]["median_s"] / result["impls"][fastest]["median_s"]
        if "embedding" in result["impls"]:
            result["ratio_vs_embedding"] = result["impls"]["embedding"]["median_s"] / result["impls"][fastest]["median_s"]
    result["flops_per_id"] = {"fast": generator_flops_per_id(d_model, lev),
                              "reference": generator_flops_per_id(d_model, lev, reference=True)}
    return result


# ---- 2. training steps and 3. inference ----------------------------------------------------------

def _amp_dtype(device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if device.type == "cuda" else None


def _build(cfg: ModelConfig, device: torch.device, impl: str, compile: bool) -> TransformerLM:
    torch.manual_seed(0)
    model = TransformerLM(cfg).to(device)
    if cfg.token_repr == "leviathan":
        model.generator.impl = impl
    if compile:
        for layer in model.layers:
            layer.compile()
    return model


def _optimizer_mb(opt: torch.optim.Optimizer) -> float:
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
               if torch.is_tensor(t)) / 2**20


def _preset_for(name: str, seq_len: int) -> ModelConfig:
    cfg = preset(name)
    return cfg if cfg.max_seq_len >= seq_len else cfg.replace(max_seq_len=seq_len)


def bench_training(name: str, plan: BenchPlan, device: torch.device, impl: str, tokens_file=None,
                   progress=None, peak: dict[str, Any] | None = None) -> dict[str, Any]:
    """Training steps (forward, backward, AdamW) of dense, iso-body and isoparametric Leviathan.

    ``peak`` (from ``matmul_peak``) turns FLOPs per second into model FLOP utilisation.
    """
    dense_cfg = _preset_for(name, plan.seq_len)
    configs = {"dense": dense_cfg, "leviathan_isobody": isobody_match(dense_cfg),
               "leviathan_isoparam": isoparametric_match(dense_cfg).config}
    B, T = plan.batch_size, plan.seq_len
    flat, source = token_ids(dense_cfg.vocab_size, B * (T + 1), tokens_file)
    batch = flat.view(B, T + 1).to(device)
    ids, targets = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
    amp = _amp_dtype(device)
    models, opts, candidates = {}, {}, {}
    for key, cfg in configs.items():
        model = _build(cfg, device, impl, plan.compile)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0,
                                **({"fused": True} if device.type == "cuda" else {"foreach": True}))

        def forward(model=model) -> torch.Tensor:
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                return model(ids, targets)

        def finish(loss: torch.Tensor, opt=opt) -> None:
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        models[key], opts[key], candidates[key] = model, opt, Candidate(forward, finish)
    errors: dict[str, str] = {}
    memory: dict[str, dict[str, float]] = {}
    runnable = first_calls(candidates, errors, device, _param_storages(models.values()), memory)
    if errors:
        raise RuntimeError(f"training step failed: {errors}")
    timings = interleaved_medians({k: c.step for k, c in runnable.items()}, device,
                                  max(0, plan.warmup - 1), plan.repeats, progress)
    tokens = B * T
    result: dict[str, Any] = {"preset": name, "batch_size": B, "seq_len": T, "token_source": source,
                              "distinct_ids": int(torch.unique(ids).numel()),
                              "precision": "bf16 autocast" if amp else "float32", "generator_impl": impl,
                              "compiled": plan.compile, "models": {}}
    for key, cfg in configs.items():
        model, t = models[key], timings[key]["median_s"]
        weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        entry = {**timings[key], "tokens_per_s": tokens / t, "n_layers": cfg.n_layers,
                 "params": real_param_count(model).to_dict(), "flops_per_step": train_step_flops(cfg, tokens, T),
                 "weights_mb": weights_mb, "optimizer_mb": _optimizer_mb(opts[key]), **memory[key]}
        if device.type == "cuda":  # the step's measured peak (gradients included) + resident state
            entry["peak_mb"] += weights_mb + entry["optimizer_mb"]
        else:  # an estimate: saved tensors + weights + gradients + AdamW moments
            entry["peak_mb"] = entry["saved_mb"] + 2 * weights_mb + entry["optimizer_mb"]
        if peak:
            entry["mfu"] = entry["flops_per_step"] / t / (peak["tflops"] * 1e12)
        result["models"][key] = entry
    d, iso, isop = (result["models"][k] for k in configs)
    result["tokens_per_s_ratio_isobody"] = iso["tokens_per_s"] / d["tokens_per_s"]
    result["tokens_per_s_ratio_isoparam"] = isop["tokens_per_s"] / d["tokens_per_s"]
    result["peak_mem_ratio_isobody"] = iso["peak_mb"] / d["peak_mb"]
    result["peak_mem_ratio_isoparam"] = isop["peak_mb"] / d["peak_mb"]
    lev = configs["leviathan_isobody"]
    gen_flops = 3 * generator_flops_per_id(lev.d_model, lev.leviathan) * result["distinct_ids"]
    body_flops = iso["flops_per_step"]
    result["flop_floor"] = {"generator_flops": gen_flops, "step_flops": body_flops + gen_flops,
                            "generator_fraction": gen_flops / (body_flops + gen_flops),
                            "best_isobody_ratio": body_flops / (body_flops + gen_flops)}
    return result


def bench_inference(name: str, plan: BenchPlan, device: torch.device, impl: str, tokens_file=None,
                    progress=None) -> dict[str, Any]:
    """Forward passes (all logits) of dense and iso-body Leviathan in eval mode, the table cached."""
    dense_cfg = _preset_for(name, plan.seq_len)
    configs = {"dense": dense_cfg, "leviathan_isobody": isobody_match(dense_cfg)}
    B, T = plan.infer_batch, plan.seq_len
    flat, source = token_ids(dense_cfg.vocab_size, B * T, tokens_file, seed=1)
    ids = flat.view(B, T).to(device)
    amp = _amp_dtype(device)
    models = {k: _build(c, device, impl, plan.compile).eval() for k, c in configs.items()}

    def forward_fn(model: TransformerLM) -> Callable[[], torch.Tensor]:
        def forward() -> torch.Tensor:
            with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                return model(ids)
        return forward

    fns = {k: forward_fn(m) for k, m in models.items()}
    gen = models["leviathan_isobody"].generator
    gen.use_table_cache = True
    gen.invalidate_table_cache()
    table_build_s = time_once(gen.cached_table, device)
    timings = interleaved_medians(fns, device, plan.warmup, plan.repeats, progress)
    cached = fns["leviathan_isobody"]()
    gen.use_table_cache = False
    uncached = fns["leviathan_isobody"]()
    gen.use_table_cache = True
    models_out = {k: {**timings[k], "tokens_per_s": B * T / timings[k]["median_s"]} for k in configs}
    return {"preset": name, "batch_size": B, "seq_len": T, "token_source": source, "generator_impl": impl,
            "table_build_s": table_build_s, "models": models_out,
            "cached_vs_uncached_max_abs_diff": float((cached.float() - uncached.float()).abs().max()),
            "forward_ratio_isobody": models_out["leviathan_isobody"]["tokens_per_s"]
            / models_out["dense"]["tokens_per_s"]}


# ---- the whole run -------------------------------------------------------------------------------

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
                   threads: int | None = None) -> dict[str, Any]:
    """All three comparisons; returns the JSON-ready results (``format_report`` prints them).

    ``plan`` replaces the sizes ``make_plan(device, quick, repeats, compile)`` would choose.
    On a CPU, PyTorch uses ``threads`` threads (default 1): on a shared machine several
    threads per op wait on each other and the timings scatter by 10x or more.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads} must be >= 1")
    previous_threads = torch.get_num_threads()
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(threads or 1)
    try:
        return _run_benchmarks(device, quick, tokens_file, repeats, compile, progress, log, plan)
    finally:
        torch.set_num_threads(previous_threads)


def _run_benchmarks(device, quick, tokens_file, repeats, compile, progress, log, plan) -> dict[str, Any]:
    from .kernels import default_impl

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
        ids, source = token_ids(V, n, tokens_file)
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
                    row = bench_training(name, plan, dev, impl, tokens_file, bar, peak)
                else:
                    row = bench_inference(name, plan, dev, impl, tokens_file, bar)
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


# ---- reporting ------------------------------------------------------------------------------------

def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The ratios the issue asks for, one row each: what, where, value, goal."""
    rows = []
    for g in results.get("generator", []):
        where = f"V={g['vocab_size']} D={g['d_model']}"
        if "speedup_vs_reference" in g:
            rows.append({"what": f"generator fwd+bwd emb/s, {g['fastest_matching']} / reference", "where": where,
                         "value": g["speedup_vs_reference"], "goal": ">= 10 (GPU)"})
            rows.append({"what": f"generator fwd+bwd emb/s, {g['fastest_matching']} / nn.Embedding", "where": where,
                         "value": g["ratio_vs_embedding"], "goal": ""})
            err = max(g["impls"][g["fastest_matching"]]["rel_err_forward"],
                      g["impls"][g["fastest_matching"]]["rel_err_grads"])
            rows.append({"what": f"{g['fastest_matching']} vs reference, max rel. error (fwd, grads)",
                         "where": where, "value": err, "goal": f"<= {MATCH_TOLERANCE:g}"})
    for t in results.get("training", []):
        where = t["preset"]
        mfu = t["models"]["dense"].get("mfu")
        cpu = results["hardware"]["device"] == "cpu"
        if mfu is not None:
            rows.append({"what": "dense MFU (train step)", "where": where, "value": mfu,
                         "goal": ">= 0.60 (CPU, V >= 16k)" if cpu else ">= 0.40 (GPU, paper-109m)"})
        rows.append({"what": "train tokens/s, Leviathan iso-body / dense", "where": where,
                     "value": t["tokens_per_s_ratio_isobody"], "goal": ">= 0.92 (CPU)" if cpu else ">= 0.90 (GPU)"})
        rows.append({"what": "train tokens/s, Leviathan isoparam / dense", "where": where,
                     "value": t["tokens_per_s_ratio_isoparam"], "goal": ""})
        rows.append({"what": "peak memory, Leviathan iso-body / dense", "where": where,
                     "value": t["peak_mem_ratio_isobody"], "goal": "<= 1.10 (GPU)"})
        rows.append({"what": "FLOP floor: best iso-body ratio", "where": where,
                     "value": t["flop_floor"]["best_isobody_ratio"], "goal": ""})
    for i in results.get("inference", []):
        rows.append({"what": "inference tokens/s, Leviathan (table cache) / dense", "where": i["preset"],
                     "value": i["forward_ratio_isobody"], "goal": "1.00 within noise"})
    return rows


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.2e}"
        return f"{x:.{digits}g}"
    return str(x)


def format_report(results: dict[str, Any]) -> str:
    hw = results["hardware"]
    peak = results["matmul_peak"]
    out = [f"device: {hw.get('device_name')} ({hw['device']}), torch {hw['torch']}, "
           f"{peak['dtype']} matmul peak measured {peak['tflops']:.3g} TFLOP/s (n={peak['n']})"]
    for g in results.get("generator", []):
        out.append(f"\n[1] generator alone, fwd+bwd, V={g['vocab_size']} D={g['d_model']}: {g['positions']} positions, "
                   f"{g['distinct_ids']} distinct ids ({g['token_source']})")
        mem_key = "peak_mb" if results["plan"]["device"] == "cuda" else "saved_mb"
        rows = [[n, _fmt(e["median_s"] * 1e3), _fmt(e["embeddings_per_s"]), _fmt(e.get(mem_key)),
                 _fmt(e.get("rel_err_forward")), _fmt(e.get("rel_err_grads"))] for n, e in g["impls"].items()]
        out.append(format_table(["path", "ms", "emb/s", mem_key, "rel err fwd", "rel err grads"], rows))
        for name, err in g.get("errors", {}).items():
            out.append(f"  {name} failed: {err}")
    for t in results.get("training", []):
        out.append(f"\n[2] training step, {t['preset']}, {t['batch_size']}x{t['seq_len']} tokens, {t['precision']}, "
                   f"generator impl {t['generator_impl']}, {t['distinct_ids']} distinct ids ({t['token_source']})")
        rows = [[k, m["n_layers"], _fmt(m["params"]["total"] / 1e6), _fmt(m["median_s"] * 1e3),
                 _fmt(m["tokens_per_s"]), _fmt(m["peak_mb"]), _fmt(m.get("mfu"))] for k, m in t["models"].items()]
        out.append(format_table(["model", "layers", "params M", "ms/step", "tokens/s", "peak MB", "MFU"], rows))
        ff = t["flop_floor"]
        out.append(f"  FLOP floor: generator {ff['generator_flops']:.3g} of {ff['step_flops']:.3g} FLOPs a step "
                   f"({100 * ff['generator_fraction']:.2f}%): best iso-body ratio {ff['best_isobody_ratio']:.4f}")
    for i in results.get("inference", []):
        out.append(f"\n[3] inference forward, {i['preset']}, {i['batch_size']}x{i['seq_len']} tokens, "
                   f"table built once in {i['table_build_s'] * 1e3:.1f} ms, cached vs uncached logits max diff "
                   f"{i['cached_vs_uncached_max_abs_diff']:.2e}")
        rows = [[k, _fmt(m["median_s"] * 1e3), _fmt(m["tokens_per_s"])] for k, m in i["models"].items()]
        out.append(format_table(["model", "ms/forward", "tokens/s"], rows))
    if results.get("errors"):
        out.append("\nerrors:\n" + "\n".join(f"  {e}" for e in results["errors"]))
    if results["plan"]["device"] == "cpu":
        out.append(f"\nCPU notes: {hw['torch_threads']} thread(s), float32 throughout; MFU is against the measured "
                   "float32 matmul rate (same threads); "
                   "memory is autograd's saved tensors (+ weights, gradients, AdamW moments for training).")
    out.append("\nratios")
    out.append(format_table(["comparison", "where", "value", "goal"],
                            [[r["what"], r["where"], _fmt(r["value"]), r["goal"]] for r in results["ratios"]]))
    return "\n".join(out)


def write_json(results: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``results`` to ``path`` through a temporary file (nothing half-written is left)."""
    import json
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(results, f, indent=2, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)

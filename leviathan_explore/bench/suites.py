"""The three comparisons of ``leviathan-explore bench``, and what they run on.

1. the generator alone, forward + backward: ``nn.Embedding`` against the reference
   generator and each fast path, embeddings per second and memory, at V = 200,019
   and D in {512, 1024} (the paper's generator settings), and at the CPU preset;
2. full training steps (forward, backward, AdamW): dense against iso-body and
   isoparametric Leviathan, tokens per second, memory, the dense model's FLOP
   utilisation and the generator's FLOP floor;
3. inference forward passes with the generator's table cache.

Each comparison runs its candidates in one process (``timing``). GPU steps run under
bf16 autocast; CPU steps in float32. Token ids come from ``tokens_file`` (an .npy), else
from ``o200k_sample`` (real o200k ids, for the rows whose vocabulary is o200k's, when the
file exists; the caller names it: the package does not know where a checkout keeps it),
else a Zipf draw.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import LeviathanConfig, ModelConfig, preset
from ..flops import generator_flops_per_id, train_step_flops
from ..generator import LeviathanGenerator
from ..model import TransformerLM
from ..params import isobody_match, isoparametric_match, real_param_count
from ..training.optim import build_optimizer
from .timing import Candidate, _param_storages, first_calls, interleaved_medians, time_once

GEN_VOCAB = 200_019  # o200k_base
GEN_WIDTHS = (512, 1024)
ZIPF_EXPONENT = 1.1
# A fast path must match the reference this closely (norm-relative, float32) to be chosen.
MATCH_TOLERANCE = 1e-5
MATMUL_N_CPU = 1024  # the float32 matmul timed beside the CPU training steps (MFU denominator)



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
    """GPU: the issue's 64 x 512 tokens at paper-109m and paper-421m; CPU: cpu-tiny and cpu-16k (+ cpu-small)."""
    if device == "cuda":
        plan = BenchPlan(device, quick, gen_positions=8192 if quick else 64 * 512, gen_widths=GEN_WIDTHS,
                         presets=("paper-109m",) if quick else ("paper-109m", "paper-421m"),
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
              seed: int = 0, *, o200k_sample: str | os.PathLike | None = None) -> tuple[torch.Tensor, str]:
    """n token ids for benchmarks (int64, CPU) and where they came from.

    In order: ``tokens_file`` (an .npy of ids), ``o200k_sample`` when ``vocab_size`` is
    o200k's and that file exists, else a Zipf sample. Ids are tiled when the source is
    shorter than n. A sample whose ids do not fit the vocabulary is passed over; a
    ``tokens_file`` whose ids do not is an error.
    """
    path = Path(tokens_file) if tokens_file is not None else None
    if path is None and vocab_size == GEN_VOCAB and o200k_sample is not None and Path(o200k_sample).exists():
        path = Path(o200k_sample)
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


# ---- 1. the generator alone --------------------------------------------------------------------


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))



def fast_impls(device: torch.device) -> list[str]:
    from .. import modes_cpu
    from ..kernels import triton_available
    native = ["native"] if device.type == "cpu" and modes_cpu.available() else []
    return ["sparse", "fused"] + native + (["triton"] if triton_available(device) else [])



def native_build_seconds() -> float | None:
    """Seconds to build the CPU kernel from scratch (into an empty cache), as a first run pays them."""
    import tempfile

    from .. import modes_cpu

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
                   progress=None, peak: dict[str, Any] | None = None, *, o200k_sample=None) -> dict[str, Any]:
    """Training steps (forward, backward, AdamW) of dense, iso-body and isoparametric Leviathan.

    ``peak`` (from ``matmul_peak``) turns FLOPs per second into model FLOP utilisation. On a
    CPU the float32 matmul rate (n = 1,024) is instead timed in the same interleaved rounds as
    the steps (``result["matmul_rate"]``), so that MFU compares the two under the same
    conditions (on this shared 2-core VM the rate measured 93-152 GFLOP/s from run to run).
    """
    dense_cfg = _preset_for(name, plan.seq_len)
    configs = {"dense": dense_cfg, "leviathan_isobody": isobody_match(dense_cfg),
               "leviathan_isoparam": isoparametric_match(dense_cfg).config}
    B, T = plan.batch_size, plan.seq_len
    flat, source = token_ids(dense_cfg.vocab_size, B * (T + 1), tokens_file, o200k_sample=o200k_sample)
    batch = flat.view(B, T + 1).to(device)
    ids, targets = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
    amp = _amp_dtype(device)
    models, opts, candidates = {}, {}, {}
    for key, cfg in configs.items():
        model = _build(cfg, device, impl, plan.compile)
        opt = build_optimizer(model, lr=1e-5, weight_decay=0.0, device_type=device.type)

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
    fns = {k: c.step for k, c in runnable.items()}
    if device.type == "cpu":  # the MFU denominator in the same rounds: a CPU's rate drifts over a run
        n = MATMUL_N_CPU
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        fns["matmul"] = lambda: torch.mm(a, b, out=c)
    timings = interleaved_medians(fns, device, max(0, plan.warmup - 1), plan.repeats, progress)
    if "matmul" in timings:
        peak = {"n": MATMUL_N_CPU, "dtype": "float32", "where": "interleaved with the training steps",
                "tflops": 2 * MATMUL_N_CPU ** 3 / timings.pop("matmul")["median_s"] / 1e12}
    tokens = B * T
    result: dict[str, Any] = {"preset": name, "batch_size": B, "seq_len": T, "token_source": source,
                              "distinct_ids": int(torch.unique(ids).numel()),
                              "precision": "bf16 autocast" if amp else "float32", "generator_impl": impl,
                              "compiled": plan.compile, "models": {}}
    if peak:
        result["matmul_rate"] = peak
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
                    progress=None, *, o200k_sample=None) -> dict[str, Any]:
    """Forward passes (all logits) of dense and iso-body Leviathan in eval mode, the table cached."""
    dense_cfg = _preset_for(name, plan.seq_len)
    configs = {"dense": dense_cfg, "leviathan_isobody": isobody_match(dense_cfg)}
    B, T = plan.infer_batch, plan.seq_len
    flat, source = token_ids(dense_cfg.vocab_size, B * T, tokens_file, seed=1, o200k_sample=o200k_sample)
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

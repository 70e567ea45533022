"""The benchmark's results as text and JSON: the ratios the issue asks for, the report, the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..files import json_safe, write_json_atomic
from ..report import format_table
from .suites import MATCH_TOLERANCE



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
        if t.get("matmul_rate", {}).get("where"):
            out.append(f"  MFU against the {t['matmul_rate']['dtype']} matmul rate timed in the same rounds: "
                       f"{t['matmul_rate']['tflops'] * 1e3:.0f} GFLOP/s (n={t['matmul_rate']['n']})")
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
                   "float32 matmul rate (same threads, timed between the training steps); "
                   "memory is autograd's saved tensors (+ weights, gradients, AdamW moments for training).")
    out.append("\nratios")
    out.append(format_table(["comparison", "where", "value", "goal"],
                            [[r["what"], r["where"], _fmt(r["value"]), r["goal"]] for r in results["ratios"]]))
    return "\n".join(out)



def write_json(results: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``results`` to ``path`` atomically (nothing half-written is left); NaN becomes null,
    anything JSON does not know its ``str``."""
    write_json_atomic(Path(path), json_safe(results), default=str)

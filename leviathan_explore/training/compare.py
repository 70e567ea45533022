"""A dense model and its matched Leviathan on the same data order: two runs and a side-by-side table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..report import format_table, human
from .config import TrainConfig
from .trainer import train


def compare(preset: str, steps: int, data_dir: str | Path, out_dir: str | Path, *, match: str = "isoparam",
            match_by: str = "depth", callbacks=(), **settings: Any) -> list[dict]:
    """Train the preset's dense model (``out_dir/dense``) and its Leviathan matched by ``match``
    (``out_dir/leviathan``) with identical settings and seed, hence the same batches.

    ``match``: "isoparam" (same total, extra depth), "isobody" (same body, fewer
    parameters) or "backbone" (the paper's revision: the dense model tied, the Leviathan
    with the identical backbone and an untied head). ``settings`` are further
    ``TrainConfig`` fields (batch_size, lr, device, resume ...). Returns the two
    summaries, dense first (only the dense one if a signal stopped it).
    """
    if match == "backbone":
        settings = {**settings, "tie_embeddings": True}
    common = dict(preset=preset, steps=steps, data_dir=str(data_dir), **settings)
    dense = TrainConfig(arch="dense", out_dir=str(Path(out_dir) / "dense"), **common)
    leviathan = TrainConfig(arch="leviathan", match=match, match_by=match_by,
                            out_dir=str(Path(out_dir) / "leviathan"), **common)
    first = train(dense, callbacks)
    if first.get("stopped_early"):  # Ctrl-C or a callback's stop during the dense run: no second run
        return [first]
    return [first, train(leviathan, callbacks)]


MATCH_LABELS = {"isoparam": "Leviathan isoparametric", "isobody": "Leviathan same body",
                "backbone": "Leviathan identical backbone"}


def model_label(summary: dict) -> str:
    """'dense', 'dense (tied)' or 'Leviathan <match>' for a run summary."""
    if summary["arch"] == "dense":
        return "dense (tied)" if summary.get("model_config", {}).get("tie_embeddings") else "dense"
    return MATCH_LABELS.get(summary.get("match"), "Leviathan")


def _loss(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def format_comparison(summaries: list[dict]) -> str:
    """The side-by-side table printed by ``leviathan-explore compare``."""
    labels = [model_label(s) for s in summaries]
    rows = [
        ["parameters"] + [f"{s['params']['total']:,} ({human(s['params']['total'])})" for s in summaries],
        ["  embedding / generator"] + [f"{s['params']['embedding'] + s['params']['generator']:,}" for s in summaries],
        ["  body"] + [f"{s['params']['body']:,}" for s in summaries],
        ["  head"] + [f"{s['params']['head']:,}" for s in summaries],
        ["layers x width"] + [f"{s['model_config']['n_layers']} x {s['model_config']['d_model']}" for s in summaries],
        ["steps"] + [str(s["steps"]) for s in summaries],
        ["tokens seen"] + [f"{s['tokens_seen']:,}" for s in summaries],
        ["val loss"] + [_loss(s["final_val_loss"]) for s in summaries],
        ["val perplexity"] + ["-" if s["final_val_ppl"] is None else f"{s['final_val_ppl']:.2f}" for s in summaries],
    ]
    for bucket in ("frequent", "medium", "rare"):
        rows.append([f"  loss, {bucket} ids"] + [_loss((s["bucket_losses"] or {}).get(bucket)) for s in summaries])
    rows.append(["tokens/s"] + ["-" if s["mean_tokens_per_s"] is None else f"{s['mean_tokens_per_s']:,.0f}"
                                for s in summaries])
    rows.append(["wall time"] + [f"{s['wall_time_s']:.1f} s" for s in summaries])
    entropy = summaries[0].get("unigram_entropy")
    foot = (f"unigram entropy of the training data: {entropy:.4f} nats (the loss of a context-free model)"
            if entropy is not None else "")
    head = f"preset {summaries[0]['preset']}, data {summaries[0]['data']['dir']} " \
           f"(vocabulary {summaries[0]['data']['vocab_size']:,})"
    return "\n".join([head, "", format_table([""] + labels, rows), "", foot]).rstrip() + "\n"

"""Verdicts: plain sentences written from the numbers of a comparison or a scaling fit.

The dashboard's Train and Scaling tabs and ``leviathan-explore compare`` print these,
so a reader learns what the numbers mean without knowing the method: lower loss is
better, who won and by how much, what each side cost, and how the result relates to
the paper's claim at the paper's scale. Pure functions of plain dicts (a run's
``summary.json``, ``ScalingReport.to_dict()``); no I/O, no Panel, no plotting. The
text is plain (no Markdown, no HTML): a caller that renders it escapes it.
"""

from __future__ import annotations

import math
from typing import Sequence

from .registry import training_flops

# The paper's reported effective-parameter multiplier N_eff / N of Leviathan (docs/method.md).
PAPER_MULTIPLIER_BAND = (1.47, 2.11)
# The paper's throughput cost of the generator: at equal body, and at equal parameters.
PAPER_THROUGHPUT_COST_ISOBODY = (0.23, 0.51)
PAPER_THROUGHPUT_COST_ISOPARAM = (0.48, 0.71)
# The paper's smallest and largest models of its scaling study (v1): the ~60M iso-body
# Leviathan and the 421M pair (docs/method.md, "The paper's model sizes").
PAPER_PARAMS_RANGE = (60e6, 421e6)
# A run this far below the paper's smallest model is "tiny": the claim is not expected to show.
TINY_FRACTION = 0.1
# Loss gaps below this many nats are reported as a tie (eval noise of a few batches is larger).
TIE_NATS = 0.005
# How many failed bootstrap resamples make the dense law undetermined.
MAX_FAILED_BOOT_SHARE = 0.1
STUDY = "results/sweeps/"

MATCH_CLAIMS = {
    "isoparam": ("at equal total parameters Leviathan is ahead at every scale studied, behaving like a dense "
                 f"model with {PAPER_MULTIPLIER_BAND[0]}x-{PAPER_MULTIPLIER_BAND[1]}x its parameters"),
    "isobody": ("with the same body (and so fewer parameters) Leviathan is ahead of the dense model, at a "
                f"throughput cost of {100 * PAPER_THROUGHPUT_COST_ISOBODY[0]:.0f}-"
                f"{100 * PAPER_THROUGHPUT_COST_ISOBODY[1]:.0f}%"),
    "backbone": ("against a tied dense model with the identical backbone Leviathan is ahead (the revision: "
                 "validation perplexity -9% at 1.2B parameters), the gain concentrated in rare tokens"),
}


def size_text(n: float) -> str:
    """A parameter or token count for prose, three significant digits: 631k, 60M, 1.2B."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _side_name(summary: dict) -> str:
    if summary.get("arch") == "dense":
        tied = (summary.get("model_config") or {}).get("tie_embeddings")
        return "dense (tied)" if tied else "dense"
    return {"isoparam": "Leviathan isoparametric", "isobody": "Leviathan same body",
            "backbone": "Leviathan identical backbone"}.get(summary.get("match"), "Leviathan")


def _loss(summary: dict) -> float | None:
    value = summary.get("final_val_loss")
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _compute(summary: dict) -> float | None:
    params = summary.get("params") or {}
    if "body" not in params or "head" not in params or summary.get("tokens_seen") is None:
        return None
    return training_flops(params, summary["tokens_seen"])


def _cost_sentence(dense: dict, lev: dict, names: tuple[str, str]) -> str:
    parts = []
    for name, s in zip(names, (dense, lev)):
        total = (s.get("params") or {}).get("total")
        flops = _compute(s)
        rate, wall = s.get("mean_tokens_per_s"), s.get("wall_time_s")
        bits = [f"{size_text(total)} parameters" if total else "parameters unknown"]
        if flops:
            bits.append(f"{flops:.2g} training FLOPs (6 x N x tokens)")
        if rate:
            bits.append(f"{size_text(rate)} tokens/s measured")
        if wall is not None:
            bits.append(f"{wall:.0f} s wall time")
        parts.append(f"{name}: {', '.join(bits)}")
    text = "Cost: " + "; ".join(parts) + "."
    d_rate, l_rate = dense.get("mean_tokens_per_s"), lev.get("mean_tokens_per_s")
    if d_rate and l_rate:
        if l_rate < d_rate:
            text += f" Leviathan trained {100 * (1 - l_rate / d_rate):.0f}% slower per token"
        else:
            text += f" Leviathan trained {100 * (l_rate / d_rate - 1):.0f}% faster per token"
        match = lev.get("match")
        band = PAPER_THROUGHPUT_COST_ISOPARAM if match == "isoparam" else PAPER_THROUGHPUT_COST_ISOBODY
        where = "at equal parameters" if match == "isoparam" else "at equal body"
        text += (f" (the paper: {100 * band[0]:.0f}-{100 * band[1]:.0f}% slower {where} on accelerators; "
                 f"this machine's numbers depend on its load)." if d_rate else ".")
    return text


def pair_verdict(dense: dict, leviathan: dict, *, seed_spread: float | None = None, study: str = STUDY) -> str:
    """What a dense-vs-Leviathan pair shows, in a few sentences, from the two run summaries.

    dense, leviathan: ``summary.json`` dicts (``train``'s return value). seed_spread: the
    largest validation-loss difference between two seeds of one model measured at a
    similar scale (``registry.seed_spread``), to say whether the gap means anything;
    None when unknown. study: where the multi-size study lives.
    """
    names = (_side_name(dense), _side_name(leviathan))
    d_loss, l_loss = _loss(dense), _loss(leviathan)
    if d_loss is None or l_loss is None:
        missing = [n for n, x in zip(names, (d_loss, l_loss)) if x is None]
        return (f"No verdict: the {' and the '.join(missing)} run has no final validation loss "
                f"(stopped or failed before its first evaluation); train both to the end to compare them.")
    gap = l_loss - d_loss
    ratio = math.exp(abs(gap))
    head = (f"Validation loss (cross-entropy in nats per token; lower is better): {names[0]} {d_loss:.3f}, "
            f"{names[1]} {l_loss:.3f}.")
    if abs(gap) < TIE_NATS:
        who = f"A tie: the two differ by {abs(gap):.3f} nats."
    else:
        winner, loser = (names[1], names[0]) if gap < 0 else (names[0], names[1])
        who = (f"{winner[0].upper() + winner[1:]} wins by {abs(gap):.3f} nats: {loser}'s perplexity is "
               f"{ratio:.2f}x {winner}'s "
               f"({math.exp(max(d_loss, l_loss)):.1f} vs {math.exp(min(d_loss, l_loss)):.1f}).")
    lines = [f"{head} {who}", _cost_sentence(dense, leviathan, names)]

    unequal = [f"{n} stopped at step {s.get('steps')} of {s.get('steps_planned', '?')}"
               for n, s in zip(names, (dense, leviathan)) if s.get("stopped_early")]
    if unequal:
        lines.append("Unequal training: " + "; ".join(unequal) + ", so the losses are not a fair comparison.")

    totals = [float((s.get("params") or {}).get("total") or 0) for s in (dense, leviathan)]
    tokens = [int(s.get("tokens_seen") or 0) for s in (dense, leviathan)]
    claim = MATCH_CLAIMS.get(leviathan.get("match"), MATCH_CLAIMS["isoparam"])
    lo, hi = PAPER_PARAMS_RANGE
    if max(totals) < TINY_FRACTION * lo:
        scale = (f"Scale: the paper finds that {claim}; it measured this on models of {size_text(lo)}-{size_text(hi)} "
                 f"parameters trained on billions of tokens. This pair has {size_text(max(totals))} parameters and "
                 f"saw {size_text(max(tokens))} tokens per model, so the claim is not expected to show: the loss "
                 f"curves are still falling steeply, one seed and one learning rate decide a lot, and the "
                 f"deeper or generator-fed Leviathan needs more steps to catch up.")
    else:
        scale = (f"Scale: the paper finds that {claim} (models of {size_text(lo)}-{size_text(hi)} parameters); "
                 f"this pair has {size_text(max(totals))} parameters and saw {size_text(max(tokens))} tokens per "
                 f"model.")
    if seed_spread is not None:
        if abs(gap) <= seed_spread:
            scale += (f" A gap of {abs(gap):.3f} nats is within the {seed_spread:.2f}-nat spread between two seeds "
                      f"of one model measured in {study}: this pair alone cannot tell the two apart.")
        else:
            scale += (f" A gap of {abs(gap):.3f} nats is larger than the {seed_spread:.2f}-nat spread between two "
                      f"seeds measured in {study}, but one pair at one learning rate is still one sample.")
    else:
        scale += " One pair at one seed and one learning rate is one sample."
    lines.append(scale + f" The study across sizes, with a learning-rate search per model, is in {study} "
                         f"(leviathan-explore fit DIR).")
    return "\n".join(lines)


# ---- scaling --------------------------------------------------------------------------------

def _interval(ci: Sequence[float | None] | None) -> str:
    lo, hi = (list(ci) + [None, None])[:2] if ci is not None else (None, None)
    return f"[{format_number(lo)}, {'unbounded' if hi is None else format_number(hi)}]"


def format_number(value: float | None, digits: int = 2) -> str:
    """A multiplier or interval end: '<0.01' rather than a misleading '0.00', '-' for none."""
    if value is None or not math.isfinite(value):
        return "-"
    if 0 < abs(value) < 10 ** -digits or value == 0:
        return f"<{10 ** -digits:.{digits}f}" if value != 0 else f"{0:.{digits}f}"
    return f"{value:.{digits}f}"


def dense_law_problems(report: dict) -> list[str]:
    """Why the dense law of ``report`` (``ScalingReport.to_dict()``) does not determine N_eff, if it does not."""
    law = report["dense_fit"]
    problems = []
    alpha = law["alpha"]
    a_lo = (alpha.get("ci") or [None, None])[0]
    if a_lo is None or a_lo <= 1e-3:
        problems.append(f"the exponent's interval reaches 0 (alpha = {alpha['value']:.3f} {_interval(alpha.get('ci'))}"
                        f"): these runs do not rule out that loss stops falling with size")
    dense = sorted(report.get("dense") or [], key=lambda r: r["n_params"])
    losses = [float(r["loss"]) for r in dense]
    E = float(law["E"]["value"])
    if losses and E >= (1 - 1e-3) * min(losses):
        problems.append(f"the floor E = {E:.3f} sits at its upper bound, the best dense loss: the fitted curve "
                        f"is flat")
    elif losses and E <= 1e-3:
        problems.append(f"the floor E = {E:.3f} sits at its lower bound 0: the fit could not place the loss "
                        f"floor, and the exponent is traded against it")
    n_boot, n_failed = int(law.get("n_boot") or 0), int(law.get("n_failed") or 0)
    if n_boot and n_failed / n_boot > MAX_FAILED_BOOT_SHARE:
        problems.append(f"{n_failed:,} of {n_boot:,} bootstrap resamples could not be fitted")
    for smaller, larger in zip(dense, dense[1:]):
        if float(larger["loss"]) > float(smaller["loss"]):
            problems.append(f"dense loss does not fall with size ({larger['name']}, {size_text(larger['n_params'])}, "
                            f"{float(larger['loss']):.3f} is worse than {smaller['name']}, "
                            f"{size_text(smaller['n_params'])}, {float(smaller['loss']):.3f})")
            break
    return problems


def scaling_verdict(report: dict, *, study: str = STUDY) -> str:
    """How the Leviathan multipliers of a fit relate to the paper's band, in a few sentences.

    report: ``ScalingReport.to_dict()`` (what ``leviathan-explore fit --json`` writes).
    """
    lo_band, hi_band = PAPER_MULTIPLIER_BAND
    lines = []
    problems = dense_law_problems(report)
    if problems:
        lines.append("Warning: the dense law is not determined by these runs (" + "; ".join(problems) + "), so "
                     "the multipliers below are not the paper's quantity.")
    lev = report.get("leviathan") or []
    if not lev:
        lines.append("No Leviathan runs to measure against the dense law.")
    else:
        numbered = [r for r in lev if r.get("multiplier") is not None]
        beyond = [r for r in lev if r.get("beyond_fitted_range")]
        if numbered:
            mults = [float(r["multiplier"]) for r in numbered]
            span = (f"{format_number(min(mults))}x-{format_number(max(mults))}x" if len(mults) > 1
                    else f"{format_number(mults[0])}x")
            if max(mults) < 1:
                where = "smaller than itself"
            elif min(mults) > 1:
                where = "larger than itself"
            else:
                where = "smaller or larger than itself"
            rel = ("below" if max(mults) < lo_band else "above" if min(mults) > hi_band
                   else "partly inside" if any(lo_band <= m <= hi_band for m in mults) else "around")
            lines.append(f"Effective size (N_eff / N; above 1 means Leviathan is worth more than its parameters): "
                         f"{len(numbered)} Leviathan run(s) behave like a dense model {where} ({span}), "
                         f"{rel} the paper's {lo_band}x-{hi_band}x.")
            reach = [r for r in numbered if _reaches_band(r.get("multiplier_ci"))]
            if reach:
                lines.append(f"The {100 * report['dense_fit'].get('level', 0.95):.0f}% intervals of "
                             f"{len(reach)} of them reach into the paper's band "
                             f"({', '.join(r['name'] + ' ' + _interval(r.get('multiplier_ci')) for r in reach)}): "
                             f"these runs cannot rule the paper's value out.")
            else:
                lines.append(f"No interval reaches the paper's band: these runs are {rel} it even allowing for "
                             f"the fit's uncertainty.")
        if beyond:
            lines.append(f"{len(beyond)} run(s) reach a loss at or below the fitted floor E (beyond the fitted "
                         f"range: no dense size matches them under this law).")
        won = [r for r in lev if r.get("matched_dense_loss") is not None and r["loss"] < r["matched_dense_loss"]]
        matched = [r for r in lev if r.get("matched_dense_loss") is not None]
        if matched:
            lines.append(f"Directly, {len(won)} of {len(matched)} Leviathan run(s) beat the dense run of their own "
                         f"size (lower validation loss is better).")
    sizes = [float(r["n_params"]) for r in (report.get("dense") or [])] + [float(r["n_params"]) for r in lev]
    if sizes:
        p_lo, p_hi = PAPER_PARAMS_RANGE
        text = (f"Scale: these models have {size_text(min(sizes))}-{size_text(max(sizes))} parameters; the paper's "
                f"{lo_band}x-{hi_band}x comes from {size_text(p_lo)}-{size_text(p_hi)} models trained on billions of "
                f"tokens.")
        if max(sizes) < TINY_FRACTION * p_lo:
            text += (" At this size the paper's effect is not expected to show (few tokens per run, curves still "
                     "falling, one seed per point).")
        if report.get("x") == "non_embedding":
            text += " N here counts body + head only; the paper counts total parameters."
        lines.append(text + f" How such a study is set up, and what the committed CPU sweeps found: {study}.")
    return "\n".join(lines)


def _reaches_band(ci: Sequence[float | None] | None) -> bool:
    if not ci:
        return False
    lo, hi = ci[0], ci[1]
    lo = 0.0 if lo is None else float(lo)
    hi = math.inf if hi is None else float(hi)
    return lo <= PAPER_MULTIPLIER_BAND[1] and hi >= PAPER_MULTIPLIER_BAND[0]


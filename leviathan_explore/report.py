"""Plain-text tables for the command line (no plotting, no third-party imports)."""

from __future__ import annotations

from typing import Any, Sequence

BLOCKS = ("embedding", "generator", "body", "head", "total")
MODEL_LABELS = {"dense": "dense", "leviathan_isobody": "Leviathan iso-body",
                "leviathan_isoparam": "Leviathan isoparametric"}


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_params_report(report: dict[str, dict], title: str = "") -> str:
    """The ``leviathan-explore params`` table: each block's count and share of the total."""
    headers = ["block"] + [MODEL_LABELS[k] for k in MODEL_LABELS]
    rows = []
    for block in BLOCKS:
        row = [block]
        for key in MODEL_LABELS:
            n, total = report[key][block], report[key]["total"]
            row.append(f"{n:,} ({100 * n / total:.1f}%)" if block != "total" else f"{n:,}")
        rows.append(row)
    rows.append(["layers"] + [report[k]["n_layers"] for k in MODEL_LABELS])
    rows.append(["width"] + [report[k]["d_model"] for k in MODEL_LABELS])
    gap = report["leviathan_isoparam"]["relative_gap"]
    d = report["dense"]
    head = f"Parameter allocation{': ' + title if title else ''} (vocabulary {d['vocab_size']:,}, " \
           f"dense {'tied' if d['tied'] else 'untied'})"
    foot = (f"isoparametric Leviathan: {report['leviathan_isoparam']['n_layers']} layers by "
            f"{report['leviathan_isoparam']['matched_by']}, total {100 * gap:+.2f}% vs dense")
    return "\n".join([head, "", format_table(headers, rows), "", foot])

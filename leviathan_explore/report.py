"""Plain-text tables for the command line (no plotting, no third-party imports)."""

from __future__ import annotations

from typing import Any, Sequence

BLOCKS = ("embedding", "generator", "body", "head", "total")
REPR_LABELS = {"leviathan": "Leviathan", "factorized": "factorised table", "codebooks": "codebooks only",
               "hashed": "hashed embedding"}


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


def format_params_report(report: dict[str, dict], title: str = "", note: str = "") -> str:
    """The ``leviathan-explore params`` table: each block's count and share of the total,
    then one line per comparison (iso-body, the revision's identical backbone, isoparametric)."""
    iso = report["leviathan_isoparam"]
    dense_tied = report["dense"]["tied"]
    rep = (report.get("representation") or {}).get("name", "leviathan")
    name = REPR_LABELS.get(rep, rep)
    columns = {"dense": "dense (tied)" if dense_tied else "dense"}
    if not dense_tied:
        columns["dense_tied"] = "dense tied"
    columns["leviathan_isobody"] = f"{name} same body"
    if "error" not in iso:
        columns["leviathan_isoparam"] = f"{name} isoparametric"
    rows = []
    for block in BLOCKS:
        row = [block]
        for key in columns:
            n, total = report[key][block], report[key]["total"]
            row.append(f"{n:,} ({100 * n / total:.1f}%)" if block != "total" else f"{n:,}")
        rows.append(row)
    rows.append(["layers"] + [report[k]["n_layers"] for k in columns])
    rows.append(["width"] + [report[k]["d_model"] for k in columns])
    d = report["dense"]
    head = f"Parameter allocation{': ' + title if title else ''} (vocabulary {d['vocab_size']:,}, " \
           f"dense {'tied' if d['tied'] else 'untied'})"
    body, back = report["leviathan_isobody"], report["leviathan_backbone"]
    stages = (report.get("representation") or {}).get("stages") or {}
    lines = [
        f"{name} stages: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in stages.items()) + ".",
        f"iso-body: the same-body {name} has {human(body['total'])} parameters, "
        f"{100 * body['relative_gap']:+.1f}% vs the {'tied' if dense_tied else 'untied'} dense model.",
        f"identical backbone (the paper's revision): dense tied {human(report['dense_tied']['total'])} vs "
        f"{name} {human(back['total'])} ({100 * back['relative_gap']:+.1f}%: the generator plus the untied head).",
    ]
    if "error" in iso:
        lines.append(f"isoparametric: not possible here. {iso['error']}")
    else:
        lines.append(f"isoparametric: {iso['n_layers']} layers by {iso['matched_by']}, total "
                     f"{100 * iso['relative_gap']:+.2f}% vs dense.")
    lines.append("Lower loss is better in every comparison; docs/method.md explains each one.")
    if note:
        lines.append(note)
    return "\n".join([head, "", format_table(["block"] + list(columns.values()), rows), "", *lines])

"""Run the tutorial notebooks in full mode and save each one's key figure as a PNG.

    python scripts/render_notebook_figures.py                      # all five -> docs/notebooks/
    python scripts/render_notebook_figures.py --only 03 04         # some of them
    python scripts/render_notebook_figures.py --executed test-artifacts/notebooks   # keep the executed copies

Each notebook runs top to bottom in a fresh kernel (LEVIATHAN_QUICK=0 unless --quick),
exactly as a reader runs it; the figure saved is the first plotly output of the cell
tagged ``key-figure`` (``# %% tags=["key-figure"]`` in the notebook's .py text). Images are written with
plotly's kaleido, which drives the system's Chromium (``apt-get install chromium``)
and needs no network. The notebooks themselves stay committed without outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
OUT_DIR = ROOT / "docs" / "notebooks"
KEY_FIGURE_TAG = "key-figure"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def key_figure(nb) -> dict:
    """The plotly JSON of the first figure output of the cell tagged ``key-figure``."""
    tagged = [c for c in nb.cells if KEY_FIGURE_TAG in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"expected one cell tagged {KEY_FIGURE_TAG!r}, found {len(tagged)}")
    for output in tagged[0].get("outputs", []):
        data = output.get("data", {})
        if PLOTLY_MIME in data:
            return data[PLOTLY_MIME]
    raise ValueError(f"cell {tagged[0].get('id')} tagged {KEY_FIGURE_TAG!r} produced no plotly figure")


def execute(path: Path, quick: bool, timeout: int):
    """Run the notebook at ``path`` in a fresh kernel with its own folder as working directory."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get("LEVIATHAN_QUICK")
    os.environ["LEVIATHAN_QUICK"] = "1" if quick else "0"  # the kernel inherits this environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if previous is None:
            os.environ.pop("LEVIATHAN_QUICK", None)
        else:
            os.environ["LEVIATHAN_QUICK"] = previous
    return nb


def write_png(figure_json: dict, out: Path, width: int = 1000) -> None:
    """Write the figure as a PNG (temporary file, then rename: no half-written image)."""
    import plotly.io as pio

    fig = pio.from_json(json.dumps(figure_json))
    height = fig.layout.height or 450
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".png.tmp")
    os.close(fd)
    try:
        fig.write_image(tmp, format="png", width=width, height=height, scale=1.5)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers to run (default: all)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"image folder (default {OUT_DIR.relative_to(ROOT)})")
    parser.add_argument("--quick", action="store_true", help="quick mode (a smoke test; the docs use full mode)")
    parser.add_argument("--executed", type=Path, help="also save the executed notebooks in this folder")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (3600)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        unknown = sorted(set(args.only) - {p.name[:2] for p in paths})
        if unknown:
            parser.error(f"--only {unknown[0]} is not a notebook number; allowed: {[p.name[:2] for p in paths]}")
        paths = [p for p in paths if p.name[:2] in args.only]
    for path in tqdm(paths, desc="notebooks", unit="notebook"):
        start = time.perf_counter()
        nb = execute(path, args.quick, args.timeout)
        out = args.out / f"{path.stem}.png"
        write_png(key_figure(nb), out)
        tqdm.write(f"{path.name}: ran in {time.perf_counter() - start:.0f} s, wrote {out}")
        if args.executed is not None:
            import nbformat

            args.executed.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.executed / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

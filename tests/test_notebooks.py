"""The tutorial notebooks are jupytext pairs: notebooks/NN_name.py (percent format, the text
that is reviewed) and notebooks/NN_name.ipynb (committed without outputs), kept in sync by
jupytext (notebooks/jupytext.toml). The content checks read the text files.

Executing them is `pytest --nbmake notebooks/` (quick mode, see notebooks/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import jupytext
import pytest
from jupytext.cli import jupytext as jupytext_cli
from jupytext.compare import NotebookDifference, compare_notebooks
from jupytext.config import load_jupytext_configuration_file
from jupytext.metadata_filter import filter_metadata

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
CONFIG = NOTEBOOK_DIR / "jupytext.toml"
NOTEBOOKS = ["01_where_the_parameters_go", "02_anatomy_of_the_generator", "03_train_dense_vs_leviathan",
             "04_embedding_geometry", "05_scaling_and_effective_parameters", "06_neighbours"]
TEXT_FORMAT = "py:percent"


def key_figure_tag() -> str:
    # The render script picks the figure by this tag, so the notebooks must use its spelling.
    spec = importlib.util.spec_from_file_location("render_notebook_figures",
                                                  ROOT / "scripts" / "render_notebook_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KEY_FIGURE_TAG


def text_notebook(name: str, folder: Path = NOTEBOOK_DIR):
    return jupytext.read(folder / f"{name}.py", fmt=TEXT_FORMAT)


def ipynb_json(name: str, folder: Path = NOTEBOOK_DIR) -> dict:
    return json.loads((folder / f"{name}.ipynb").read_text(encoding="utf-8"))


def copy_pair(name: str, folder: Path) -> Path:
    """The pair and the jupytext config in ``folder``, the .py newer than the .ipynb.

    jupytext takes the inputs from the newer file; fixing the order makes the checks below
    independent of the timestamps a checkout happens to give the files."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONFIG, folder / CONFIG.name)
    for suffix in (".ipynb", ".py"):
        shutil.copy(NOTEBOOK_DIR / f"{name}{suffix}", folder / f"{name}{suffix}")
    now = time.time()
    os.utime(folder / f"{name}.ipynb", (now - 60, now - 60))
    os.utime(folder / f"{name}.py", (now, now))
    return folder


def assert_inputs_equal(name: str, folder: Path) -> None:
    """jupytext's comparison of the two files' cells and metadata, without its allowances
    for expected round-trip differences: raises NotebookDifference."""
    cell_filter = load_jupytext_configuration_file(str(folder / CONFIG.name)).cell_metadata_filter
    ipynb = jupytext.read(folder / f"{name}.ipynb")
    for cell in ipynb.cells:
        # Cell metadata that the config keeps out of the text (JupyterLab's own) is in the
        # .ipynb only by design; compare_notebooks does not apply the config's filter itself.
        cell.metadata = filter_metadata(cell.metadata, cell_filter)
    compare_notebooks(text_notebook(name, folder), ipynb, fmt=TEXT_FORMAT, allow_expected_differences=False)


def files_sync_rewrites(name: str, folder: Path) -> list[str]:
    """The files of the pair in ``folder`` that `jupytext --sync` changes (what jupytext's
    pre-commit hook checks); it rewrites the copy in ``folder``, so pass a copy."""
    paths = [folder / f"{name}{suffix}" for suffix in (".ipynb", ".py")]
    before = {p: p.read_bytes() for p in paths}
    assert jupytext_cli(["--sync", "--quiet", str(paths[0])]) in (0, None)
    return [p.name for p in paths if p.read_bytes() != before[p]]


def assert_outputs_absent(nb: dict) -> None:
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"cell {i} has outputs"


def test_the_notebooks_and_nothing_else():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == NOTEBOOKS
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.py") if p.name != "conftest.py") == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_pair_is_in_sync(name, tmp_path):
    folder = copy_pair(name, tmp_path)
    assert_inputs_equal(name, folder)
    assert files_sync_rewrites(name, folder) == [], "run: jupytext --sync notebooks/*.ipynb"


@pytest.mark.parametrize("edited", [".py", ".ipynb"])
def test_the_sync_check_reports_a_pair_edited_on_one_side(edited, tmp_path):
    name = NOTEBOOKS[0]
    folder = copy_pair(name, tmp_path)
    path = folder / f"{name}{edited}"
    mtime = path.stat().st_mtime
    if edited == ".py":
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("sentence = ", "sentence = 'edited'\nsentence = ", 1), encoding="utf-8")
    else:
        nb = ipynb_json(name, folder)
        next(c for c in nb["cells"] if c["cell_type"] == "code")["source"].append("\nedited = True")
        path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    os.utime(path, (mtime, mtime))  # keep the order copy_pair set: only the content changed
    with pytest.raises(NotebookDifference):
        assert_inputs_equal(name, folder)
    assert files_sync_rewrites(name, folder) == [f"{name}.ipynb"]


def test_saving_in_jupyterlab_writes_both_files(tmp_path):
    from jupytext import TextFileContentsManager  # needs jupyter_server, installed with jupyterlab

    name = NOTEBOOKS[0]
    folder = copy_pair(name, tmp_path)
    manager = TextFileContentsManager(root_dir=str(folder))
    # the browser gets the notebook as JSON and sends it back as JSON
    nb = json.loads(json.dumps(manager.get(f"{name}.ipynb")["content"]))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "sentence" in c["source"])
    edit = "print('edited in JupyterLab')"
    cell["source"] += "\n" + edit
    # what JupyterLab writes when a cell's input is collapsed: its own metadata, not for review
    cell["metadata"]["jupyter"] = {"source_hidden": True}
    manager.save({"type": "notebook", "format": "json", "content": nb}, f"{name}.ipynb")

    text = (folder / f"{name}.py").read_text(encoding="utf-8")
    saved = ipynb_json(name, folder)
    assert edit in text and "source_hidden" not in text
    assert any(edit in "".join(c["source"]) for c in saved["cells"])
    assert_outputs_absent(saved)
    assert_inputs_equal(name, folder)
    assert files_sync_rewrites(name, folder) == []

    # Run, then saved with its outputs: they go to the .ipynb only, the reviewed text is unchanged.
    cell["execution_count"] = 1
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "edited in JupyterLab\n"}]
    manager.save({"type": "notebook", "format": "json", "content": nb}, f"{name}.ipynb")
    assert (folder / f"{name}.py").read_text(encoding="utf-8") == text
    with pytest.raises(AssertionError, match="has outputs"):
        assert_outputs_absent(ipynb_json(name, folder))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    assert_outputs_absent(ipynb_json(name))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_quick_mode_switch_comes_first(name):
    cells = text_notebook(name).cells
    first_code = next(c for c in cells if c.cell_type == "code")
    assert 'QUICK = os.environ.get("LEVIATHAN_QUICK", "0") == "1"' in first_code.source
    assert cells[0].cell_type == "markdown" and "LEVIATHAN_QUICK=1" in cells[0].source
    # quick mode changes sizes, never which cells run: no cell is skipped on QUICK
    for cell in cells:
        assert "if QUICK:" not in cell.source and "if not QUICK" not in cell.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_prose_before_every_code_cell_and_one_key_figure(name):
    cells = text_notebook(name).cells
    first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    for i in range(first_code + 1, len(cells)):
        if cells[i].cell_type == "code":
            assert cells[i - 1].cell_type == "markdown", f"code cell {i} has no prose before it"
    tag = key_figure_tag()
    tagged = [c for c in cells if tag in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and ".show()" in tagged[0].source

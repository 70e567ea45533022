"""The tutorial notebooks are committed as scripts/make_notebooks.py writes them: no outputs,
a quick-mode switch first, and prose before every code cell.

Executing them is `pytest --nbmake notebooks/` (quick mode, see notebooks/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_where_the_parameters_go", "02_anatomy_of_the_generator", "03_train_dense_vs_leviathan",
             "04_embedding_geometry", "05_scaling_and_effective_parameters"]


def load_script():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook(name: str) -> dict:
    return json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))


def test_the_five_notebooks_and_nothing_else():
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == NOTEBOOKS
    assert list(load_script().NOTEBOOKS) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_what_the_script_writes(name):
    committed = (ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8")
    assert committed == load_script().render(name), "run: python scripts/make_notebooks.py"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    for cell in notebook(name)["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_quick_mode_switch_comes_first(name):
    cells = notebook(name)["cells"]
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert 'QUICK = os.environ.get("LEVIATHAN_QUICK", "0") == "1"' in "".join(first_code["source"])
    assert cells[0]["cell_type"] == "markdown" and "LEVIATHAN_QUICK=1" in "".join(cells[0]["source"])
    # quick mode changes sizes, never which cells run: no cell is skipped on QUICK
    for cell in cells:
        src = "".join(cell["source"])
        assert "if QUICK:" not in src and "if not QUICK" not in src


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_prose_before_every_code_cell_and_one_key_figure(name):
    cells = notebook(name)["cells"]
    for before, cell in zip(cells, cells[1:]):
        if cell["cell_type"] == "code" and cell is not next(c for c in cells if c["cell_type"] == "code"):
            assert before["cell_type"] == "markdown", f"cell {cell['id']} has no prose before it"
    tagged = [c for c in cells if "key-figure" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and ".show()" in "".join(tagged[0]["source"])


def test_the_check_mode_reports_a_stale_notebook(tmp_path, monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(script, "NOTEBOOK_DIR", tmp_path)
    assert script.main([]) == 0
    assert script.main(["--check"]) == 0
    (tmp_path / f"{NOTEBOOKS[0]}.ipynb").write_text("{}")
    assert script.main(["--check"]) == 1
    assert NOTEBOOKS[0] in capsys.readouterr().err

"""One owner for each thing: no import cycles inside the package, one module per run-file name.

Both checks read the source (``ast``), so they see imports inside functions too, which
an import at run time would only meet on the path that runs them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "leviathan_explore"

# Import cycles that are known and being removed; each entry is a sorted tuple of modules.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def package_modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file (``from a import b`` counts
    as importing ``a.b`` when that is a module, else ``a``)."""
    graph = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        targets.add(f"{source}.{alias.name}")
                    elif source in modules:
                        targets.add(source)
        targets.discard(name)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_cycle_finder_finds_a_pair_and_a_ring_and_nothing_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [("a", "b")]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [("a", "b", "c")]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_relative_imports_inside_functions():
    graph = import_graph(package_modules())
    # analysis.sweep imports the trainer only inside its functions (it trains on demand)
    assert "leviathan_explore.training.trainer" in graph["leviathan_explore.analysis.sweep"]
    assert "leviathan_explore.training.runs" in graph["leviathan_explore.analysis.registry"]
    assert "leviathan_explore.files" in graph["leviathan_explore.data.shards"]


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    found = set(cycles(import_graph(package_modules())))
    assert found - KNOWN_CYCLES == set(), f"import cycles: {sorted(found - KNOWN_CYCLES)}"


# ---- file names ------------------------------------------------------------------------------

RUN_FILE_NAMES = ('"summary.json"', '"metrics.jsonl"', '"config.json"', '"selected.json"', '"grid.json"',
                  '"study.json"')
OWNER = "training/runs.py"
# Modules that spell one of these names for another thing: export.py's "config.json" is the
# exported Hugging Face model's (export.HF_CONFIG_FILE), not a run's.
OTHER_MEANINGS = {"export.py": ['"config.json"']}


def test_run_file_names_are_spelled_out_by_their_owner_only():
    spelled: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        code = path.read_text(encoding="utf-8")
        names = [n for n in RUN_FILE_NAMES if n in code]
        if names:
            spelled[rel] = names
    assert OWNER in spelled  # the check can see a literal at all
    strays = {rel: names for rel, names in spelled.items() if rel != OWNER and names != OTHER_MEANINGS.get(rel)}
    assert strays == {}, f"take these names from leviathan_explore.training.runs: {strays}"


# A token directory's files are data.shards' and data.compaction's; a checkpoint's "manifest.json"
# is training.checkpoint's own (what the checkpoint holds, not a corpus).
DATA_FILE_OWNERS = {'"manifest.json"': {"data/shards.py", "training/checkpoint.py"},
                    '"vocab_map.json"': {"data/compaction.py"}}


def test_data_file_names_are_spelled_out_by_their_owners_only():
    for name, owners in DATA_FILE_OWNERS.items():
        spelled = {path.relative_to(PACKAGE).as_posix() for path in sorted(PACKAGE.rglob("*.py"))
                   if name in path.read_text(encoding="utf-8")}
        assert spelled == owners, f"{name}: spelled in {sorted(spelled - owners)}, take it from {sorted(owners)}"

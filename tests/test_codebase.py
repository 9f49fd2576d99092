"""The codebase's own rules, checked over the real tree: no merge-conflict markers in a tracked text file,
README's layout table names every module, import-linter's layers cover every module and no import goes
round in a circle, and no function is longer than 60 lines unless its docstring says why."""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "forgetlab"
OUR_PACKAGES = ("forgetlab", "analysis", "hydra_plugins.forgetlab_sweeper")
MAX_FUNCTION_LINES = 60
# A longer function says why in its docstring with these words.
LONG_BECAUSE = "long because"
CONFLICT = re.compile(r"^(<{7}(?: |$)|={7}$|>{7}(?: |$))", re.MULTILINE)


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def conflict_markers(text: str) -> list[str]:
    return [m.group(0) for m in CONFLICT.finditer(text)]


def test_the_conflict_check_finds_a_marker_and_nothing_else():
    merged = "a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> branch\n"
    assert len(conflict_markers(merged)) == 3
    assert conflict_markers("a heading\n=======\n") == ["======="]  # a setext heading is one: we never write them
    assert conflict_markers("x = '<<<<<<<<'\n# ==== not seven\n") == []


def test_no_tracked_text_file_holds_a_merge_conflict_marker():
    found = []
    for path in tracked_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary (figures), or deleted in the working tree
        if conflict_markers(text):
            found.append(str(path.relative_to(ROOT)))
    assert not found, f"merge-conflict markers in {found}"


def package_modules() -> list[str]:
    """Every module and subpackage of forgetlab, by its path under src/forgetlab (e.g. 'tracking/store.py')."""
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def layout_table() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Layout")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_readme_layout_table_names_every_module():
    table = layout_table()
    missing = [m for m in package_modules() if Path(m).name not in table and m not in table]
    assert not missing, f"README.md's layout table does not name {missing}"


def test_the_layout_check_would_see_a_missing_module():
    assert "registry.py" in layout_table()
    assert "no_such_module.py" not in layout_table()


def layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["id"] == "layers")
    return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def test_every_module_of_forgetlab_is_in_a_layer():
    in_layers = set().union(*layers())
    top = {f"forgetlab.{Path(m).parts[0].removesuffix('.py')}" for m in package_modules()}
    assert not sorted(top - in_layers), f"modules outside import-linter's layers: {sorted(top - in_layers)}"


def cycles(graph, modules: set[str]) -> list[list[str]]:
    """The import circles among ``modules`` (Tarjan's strongly connected components of more than one)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v) & modules:
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
                found.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


def test_no_import_goes_round_in_a_circle():
    graph = grimp.build_graph("forgetlab", "analysis", "hydra_plugins")
    ours = {m for m in graph.modules if m.startswith(OUR_PACKAGES)}
    assert len(ours) > 50
    assert cycles(graph, ours) == []


def test_the_circle_check_finds_a_circle():
    class Graph:
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges[m]

    assert cycles(Graph(), {"a", "b", "c", "d"}) == [["a", "b", "c"]]


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function longer than the limit whose docstring does not say why."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and LONG_BECAUSE not in (ast.get_docstring(node) or "").lower():
                found.append((node.name, lines))
    return found


@pytest.mark.parametrize("folder", ["src", "analysis", "experiments"])
def test_no_function_is_longer_than_60_lines_unless_it_says_why(folder):
    found = {str(p.relative_to(ROOT)): long_functions(p.read_text()) for p in (ROOT / folder).rglob("*.py")}
    assert not {k: v for k, v in found.items() if v}


def test_the_length_check_counts_lines():
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    assert long_functions(f"def f():\n{body}\n") == [("f", 71)]
    assert long_functions(f'def f():\n    """Long because it is a table."""\n{body}\n') == []

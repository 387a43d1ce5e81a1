"""The library's layers import only downwards: ``bcos/`` never imports the application (``lightning_modules``,
``datamodules``, ``callbacks``, ``train``) nor Lightning, and neither its modules nor its subpackages import each
other in a cycle. Imports are read from the source with ``ast`` (lazy imports inside functions count too)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APPLICATION = ("lightning_modules", "datamodules", "callbacks", "train", "lightning", "pytorch_lightning")


def module_name(file: Path, root: Path) -> str:
    parts = file.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in (child, *_runtime_nodes(child)))
            continue
        yield node
        yield from _runtime_nodes(node)


def imported_modules(file: Path, root: Path) -> set[str]:
    """The absolute names of the modules ``file`` imports at run time (``from x import y``: ``x.y`` when that is a
    module)."""
    name = module_name(file, root)
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                path = root.joinpath(*candidate.split("."))
                found.add(candidate if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
                          else source)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules it imports, for every module of ``package`` under ``root`` except the ``__main__``
    entry points (``python -m`` runs them; nothing imports them, so they close no cycle)."""
    return {module_name(file, root): imported_modules(file, root)
            for file in sorted((root / package).rglob("*.py")) if file.name != "__main__.py"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (as the list of its nodes, first repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target in graph and target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer(module: str, package: str) -> str:
    """The subpackage (or top-level module) of ``package`` that ``module`` belongs to."""
    return ".".join(module.split(".")[:2]) if module.startswith(package + ".") else module


def package_graph(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    layers: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = layer(module, package)
        layers.setdefault(source, set()).update(
            layer(t, package) for t in targets if (t == package or t.startswith(package + ".")) and
            layer(t, package) != source)
    return layers


GRAPH = import_graph(REPO, "bcos")


def test_the_graph_reads_relative_and_lazy_imports():
    assert "bcos.handle" in GRAPH["bcos.explain.protocol"]  # from ..handle import model_logits
    assert "bcos.hub" in GRAPH["bcos.loader"]
    assert GRAPH["bcos.cli.evaluate_lm"] >= {"bcos.loader", "bcos.evaluate.lm.run"}


def test_the_library_never_imports_the_application():
    offending = {module: sorted(t for t in targets if t.split(".")[0] in APPLICATION)
                 for module, targets in GRAPH.items()}
    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_no_module_and_no_subpackage_of_the_library_is_in_an_import_cycle():
    modules = {module: {t for t in targets if t in GRAPH} for module, targets in GRAPH.items()}
    assert find_cycle(modules) is None
    assert find_cycle(package_graph(GRAPH, "bcos")) is None


@pytest.mark.parametrize("files, cycle", [
    ({"a/__init__.py": "", "a/x.py": "from .y import f", "a/y.py": "def f():\n    from a import x\n"},
     ["a.x", "a.y", "a.x"]),
    ({"a/__init__.py": "", "a/p/__init__.py": "", "a/p/m.py": "import a.q.n", "a/q/__init__.py": "",
      "a/q/n.py": "from ..p import m"}, ["a.p", "a.q", "a.p"]),
    ({"a/__init__.py": "", "a/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .y import f\n",
      "a/y.py": "from . import x"}, None),
])
def test_a_planted_cycle_is_found(tmp_path, files, cycle):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, "a")
    modules = {module: {t for t in targets if t in graph} for module, targets in graph.items()}
    found = find_cycle(package_graph(graph, "a")) if cycle and cycle[0] == "a.p" else find_cycle(modules)
    assert found == cycle

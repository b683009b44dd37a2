"""The shape of the code: the import graph of ``kml`` has no cycle, no function is longer
than 60 lines (except the tables listed here), and no public function takes more than 10
parameters (except config dataclasses and the public layers' constructors, whose keywords
users call). Read from the source with ``ast``; lazy imports inside functions and
``importlib.import_module("kml....")`` calls count as edges."""

from __future__ import annotations

import ast
from pathlib import Path

KML = Path(__file__).resolve().parents[1] / "kml"

#: functions whose body is a table (one entry per line), allowed past the length limit
TABLES: set[str] = set()
#: constructors users call with keywords (public layers)
LAYER_CONSTRUCTORS = {"kml.modulation.KernelModulatedConv2d.__init__"}
MAX_LINES = 60
MAX_PARAMETERS = 10


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(KML.rglob("*.py")):
        parts = path.relative_to(KML.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """``{module: the kml modules it imports}`` (any depth, lazy and ``importlib`` imports included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets += [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                  == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
                targets.append(str(node.args[0].value))
        graph[name] = {t for t in (_resolve(x, modules) for x in targets if x.startswith("kml")) if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """``(qualified name, node, public)`` of every function and method of ``kml``."""
    out = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())

        def walk(node, prefix: str, public: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    qualified = f"{prefix}.{child.name}"
                    is_public = public and (not child.name.startswith("_") or child.name == "__init__")
                    out.append((qualified, child, is_public))
                    walk(child, qualified, False)
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}.{child.name}", public and not child.name.startswith("_"))

        walk(tree, name, not any(part.startswith("_") and part != "__init__" for part in name.split(".")))
    return out


def test_the_import_graph_has_no_cycle():
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_graph_sees_lazy_and_importlib_imports(tmp_path, monkeypatch):
    """What the cycle test guards: an import inside a function, or by importlib, is an edge."""
    package = tmp_path / "kml"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from kml.b import g\n")
    (package / "b.py").write_text("import importlib\n\ndef g():\n    importlib.import_module('kml.a')\n")
    monkeypatch.setattr(__import__(__name__), "KML", package)
    graph = import_graph()
    assert graph["kml.a"] == {"kml.b"} and graph["kml.b"] == {"kml.a"}
    assert cycles(graph) == [["kml.a", "kml.b"]]


def test_no_function_is_longer_than_60_lines():
    long = [f"{name} ({node.end_lineno - node.lineno + 1})" for name, node, _ in functions()
            if node.end_lineno - node.lineno + 1 > MAX_LINES and name not in TABLES]
    assert long == [], "functions over 60 lines: " + ", ".join(long)


def test_no_public_function_takes_more_than_10_parameters():
    def count(node) -> int:
        args = node.args
        names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
        return len(names)

    wide = [f"{name} ({count(node)})" for name, node, public in functions()
            if public and count(node) > MAX_PARAMETERS and name not in LAYER_CONSTRUCTORS]
    assert wide == [], "public functions with more than 10 parameters: " + ", ".join(wide)

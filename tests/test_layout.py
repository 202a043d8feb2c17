"""The package layout follows the pipeline: each folder imports only from folders before it.

Folders in pipeline order (docs/architecture.md): the foundation (errors, limits, version,
readers),
``ir`` (nodes, graph, op table, differentiation, interpreter, program), ``syntax`` (text to a
syntax tree), ``lower`` (syntax tree to IR), ``emit`` (the module writer, both backends, the
allowlist), ``gradcheck`` (sympy and finite differences), ``run`` (data, optimizers, training,
evaluation), ``ui`` (commands, REPL, drawings, plots, import hook), then the package's facade
(``exprgrad``, ``exprgrad.api``). Read from the source with ``ast``: no import of exprgrad needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "exprgrad"
RANK = {"errors": 0, "limits": 0, "version": 0, "readers": 0, "ir": 1, "syntax": 1, "lower": 2,
        "emit": 3, "gradcheck": 4, "run": 4, "ui": 5, "api": 6, "__init__": 6, "__main__": 7}
#: modules that import lazily to keep start-up light (`exprgrad --help` does not load sympy)
LAZY = {"exprgrad", "exprgrad.ui.cli"}


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return out


def _rank(module: str) -> int:
    parts = module.split(".")
    return RANK["__init__"] if len(parts) == 1 else RANK[parts[1]]


def _imports(name: str, path: Path, tree: ast.Module) -> list[tuple[ast.ImportFrom, str, bool]]:
    """(import node, target module, at module level) for each import of an exprgrad module,
    leaving out imports made for type checking only."""
    typing_only = {id(n) for stmt in tree.body if isinstance(stmt, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(stmt.test) for n in ast.walk(stmt)}
    top = {id(n) for n in tree.body}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or id(node) in typing_only:
            continue
        if node.level:
            base = package[:len(package) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        elif node.module and node.module.split(".")[0] == "exprgrad":
            target = node.module
        else:
            continue
        found.append((node, target, id(node) in top))
    return found


def test_every_folder_imports_only_from_folders_before_it() -> None:
    wrong = []
    for name, (path, tree) in _modules().items():
        for node, target, _ in _imports(name, path, tree):
            if _rank(target) > _rank(name):
                wrong.append(f"{name}:{node.lineno} imports {target}")
    assert wrong == []


def test_ir_imports_nothing_but_itself_and_the_foundation() -> None:
    for name, (path, tree) in _modules().items():
        if name.startswith("exprgrad.ir"):
            for _node, target, _ in _imports(name, path, tree):
                assert target.startswith("exprgrad.ir") or _rank(target) == 0, (name, target)


def test_no_import_cycles_and_no_function_local_imports() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in modules.items():
        for node, target, at_top in _imports(name, path, tree):
            assert at_top or name in LAZY, f"{name}:{node.lineno} imports {target} in a function"
            if at_top:
                graph.setdefault(name, set()).add(target if target in modules else
                                                  target.rsplit(".", 1)[0])
    state: dict[str, int] = {}
    for start in graph:  # iterative depth-first search for a back edge
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        state[start] = state.get(start, 0) or 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                raise AssertionError(f"import cycle through {child} and {node}")
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))


def test_no_private_name_is_imported_from_another_module() -> None:
    for name, (path, tree) in _modules().items():
        for node, target, _ in _imports(name, path, tree):
            private = [a.name for a in node.names if a.name.startswith("_")
                       and a.name != "__version__"]
            assert private == [], f"{name}:{node.lineno} imports {private} from {target}"

"""The structure of the code (docs/architecture.md, Layout): no import circles, stages import only
downwards, and no module reads another class's private attributes. Read from the source with ast."""
import ast
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLED_AS = {"ana_funcs": "smalldata.funcs", "producers": "smalldata.cli"}


def modules() -> Dict[str, Path]:
    """Dotted name -> file of every module of smalldata and ana_funcs."""
    out = {}
    for top in ("smalldata", "ana_funcs"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            parts[0] = INSTALLED_AS.get(parts[0], parts[0])
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = modules()


def imports(path: Path) -> Iterator[Tuple[str, int]]:
    """The project modules that ``path`` imports anywhere in it (functions too), with their lines."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name not in ("smalldata", "smalldata.funcs"):
                yield name, node.lineno
                break


GRAPH: Dict[str, Set[str]] = {m: {t for t, _ in imports(p)} - {m} for m, p in MODULES.items()}


def test_no_import_circles():
    """Tarjan's strongly connected components of the module graph: each must be one module."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


#: what runs a run (event loops, session, commands' back ends): no stage below imports these
TOP = ("smalldata.pipeline", "smalldata.live", "smalldata.beamtime", "smalldata.ana", "smalldata.report")
#: stage -> stages it must not import (each lies above it)
NOT_BELOW = {
    "smalldata.parallel": ("smalldata.config", "smalldata.pulses", "smalldata.io", "smalldata.calib",
                           "smalldata.fused", "smalldata.sums", "smalldata.output") + TOP,
    "smalldata.output": ("smalldata.config", "smalldata.io", "smalldata.calib", "smalldata.fused",
                         "smalldata.sums") + TOP,
    "smalldata.io": ("smalldata.calib", "smalldata.fused", "smalldata.sums") + TOP,
    "smalldata.timing": ("smalldata.calib", "smalldata.fused", "smalldata.sums") + TOP,
    "smalldata.cameras": TOP,
    "smalldata.detectors": ("smalldata.config", "smalldata.io", "smalldata.calib", "smalldata.fused",
                            "smalldata.sums", "smalldata.output") + TOP,
    "smalldata.spectro": TOP,
    "smalldata.plugin": ("smalldata.config", "smalldata.pulses", "smalldata.io", "smalldata.calib",
                         "smalldata.fused", "smalldata.sums", "smalldata.pipeline", "smalldata.output"),
    "smalldata.config": ("smalldata.calib", "smalldata.io", "smalldata.fused", "smalldata.sums",
                         "smalldata.timing") + TOP,
    "smalldata.pulses": ("smalldata.io", "smalldata.calib", "smalldata.fused", "smalldata.sums") + TOP,
    "smalldata.fused": ("smalldata.calib", "smalldata.io", "smalldata.sums") + TOP,
    "smalldata.calib": ("smalldata.fused", "smalldata.sums") + TOP,
    "smalldata.sums": TOP,
}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("stage", sorted(NOT_BELOW))
def test_stages_import_only_downwards(stage):
    found = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
             for m in sorted(MODULES) if in_package(m, stage)
             for t, line in imports(MODULES[m])
             if any(in_package(t, above) for above in NOT_BELOW[stage])]
    assert found == []


def private_names(tree: ast.AST) -> Set[str]:
    """``_name`` attributes and methods that the classes in ``tree`` define on themselves."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            names.update(n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_reads_of_other_objects_private_attributes():
    """``other._x`` is allowed only inside the class that defines ``_x`` (e.g. merging two of its own)."""
    trees = {path: ast.parse(path.read_text()) for path in MODULES.values()}
    private = set().union(*(private_names(tree) for tree in trees.values()))
    found = []
    for path, tree in sorted(trees.items()):
        own = {}
        for cls in (c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)):
            names = private_names(cls)
            own.update((id(node), names) for node in ast.walk(cls))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private and node.attr not in own.get(id(node), ()) \
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert found == []

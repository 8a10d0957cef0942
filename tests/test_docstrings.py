"""Every public name of smalldata, ana_funcs and producers has a docstring (walked with ast).

Public: module-level functions and classes, and methods of public classes, whose names do
not start with ``_``. A method that overrides a documented method of a base class defined
in these packages counts as documented: ``help()`` and ``inspect.getdoc`` show the base
class's docstring for it.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("smalldata", "ana_funcs", "producers")
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def public(name: str) -> bool:
    return not name.startswith("_")


def base_names(cls: ast.ClassDef) -> List[str]:
    """Names of the base classes as written (``DetObjectFunc``, ``frames.Frames`` -> ``Frames``)."""
    names = []
    for b in cls.bases:
        if isinstance(b, ast.Name):
            names.append(b.id)
        elif isinstance(b, ast.Attribute):
            names.append(b.attr)
    return names


def class_table(trees: Dict[Path, ast.Module]) -> Dict[str, dict]:
    """Class name -> its base names and documented methods, over all files."""
    table: Dict[str, dict] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                entry = table.setdefault(node.name, {"bases": [], "documented": set()})
                entry["bases"] += base_names(node)
                entry["documented"] |= {f.name for f in node.body
                                        if isinstance(f, FUNCS) and ast.get_docstring(f) is not None}
    return table


def inherited_docs(name: str, table: Dict[str, dict], seen: Set[str] = frozenset()) -> Set[str]:
    """Methods documented by the base classes of class ``name`` (transitively)."""
    out: Set[str] = set()
    for base in table.get(name, {}).get("bases", []):
        if base in table and base not in seen:
            out |= table[base]["documented"] | inherited_docs(base, table, seen | {name})
    return out


def undocumented(path: Path, tree: ast.Module, table: Dict[str, dict], root: Path = ROOT) -> List[str]:
    """``file:line name`` of each public name of ``tree`` without a docstring."""
    where = path.relative_to(root)
    missing = []
    for node in tree.body:
        if not isinstance(node, FUNCS + (ast.ClassDef,)) or not public(node.name):
            continue
        if ast.get_docstring(node) is None:
            missing.append(f"{where}:{node.lineno} {node.name}")
        if isinstance(node, ast.ClassDef):
            inherited = inherited_docs(node.name, table)
            for item in node.body:
                if isinstance(item, FUNCS) and public(item.name) and ast.get_docstring(item) is None \
                        and item.name not in inherited:
                    missing.append(f"{where}:{item.lineno} {node.name}.{item.name}")
    return missing


def walk(root: Path, packages) -> List[str]:
    """Every undocumented public name of ``packages`` under ``root``."""
    files = sorted(f for package in packages for f in (root / package).rglob("*.py"))
    trees = {f: ast.parse(f.read_text(encoding="utf-8"), filename=str(f)) for f in files}
    table = class_table(trees)
    return [m for f, tree in trees.items() for m in undocumented(f, tree, table, root)]


def test_every_public_name_has_a_docstring():
    assert len(list((ROOT / "smalldata").rglob("*.py"))) > 50  # the walk sees the packages
    missing = walk(ROOT, PACKAGES)
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


def test_the_walk_finds_a_missing_docstring(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "probe.py").write_text(
        '"""A module."""\n'
        'def documented():\n    """Yes."""\n'            # 2
        'def bare():\n    pass\n'                        # 4
        'def _private():\n    pass\n'                    # 6
        'class Base:\n    """A base."""\n'               # 8
        '    def run(self):\n        """Runs."""\n'      # 10
        'class Thing(Base):\n    """A thing."""\n'       # 12
        '    def run(self):\n        pass\n'             # 14: documented by Base
        '    def method(self):\n        pass\n'          # 16
        '    def _hidden(self):\n        pass\n'         # 18
        '    @property\n    def size(self):\n        return 1\n')  # 21
    assert walk(tmp_path, ["pkg"]) == ["pkg/probe.py:4 bare", "pkg/probe.py:16 Thing.method",
                                       "pkg/probe.py:21 Thing.size"]

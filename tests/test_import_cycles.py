"""No import cycles among the modules of ``packages/*/src``.

Every import counts, also one inside a function (a lazy import hides a cycle, it does not break
it), except those under ``if TYPE_CHECKING:`` and a submodule importing its own package (a
package's ``__init__`` re-exporting its submodules is not a cycle). The sources are read, not
imported, so every package present is checked whether or not it is installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/packages/*/src``."""
    found = {}
    for src in sorted(root.glob("packages/*/src")):
        for path in sorted(src.rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(name: str, path: Path) -> set[str]:
    """The dotted names ``name``'s file imports (relative imports resolved), outside
    ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = {
        id(node) for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body for node in ast.walk(statement)
    }
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.update(f"{module}.{alias.name}" for alias in node.names)  # a submodule or a member
            names.add(module)
    return names


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``found`` it imports."""
    edges = {}
    for name, path in found.items():
        edges[name] = set()
        for target in imported_names(name, path):
            while target and target not in found:  # ``a.b.member`` -> ``a.b``
                target = target.rpartition(".")[0]
            own_package = found.get(target, Path()).name == "__init__.py" and name.startswith(target + ".")
            if target and target != name and not own_package:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_in_any_package():
    found = modules(ROOT)
    assert len({path.parents[0] for path in found.values()}) > 5, "packages/*/src not found"
    loops = cycles(import_graph(found))
    assert not loops, "import cycles: " + "; ".join(" <-> ".join(loop) for loop in loops)


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_finds_a_cycle_through_a_lazy_relative_import(tmp_path):
    write(tmp_path, {
        "packages/a/src/pkg/__init__.py": "from .model import Model\n",
        "packages/a/src/pkg/model.py": "def decoder():\n    from .decoder import Decoder\n",
        "packages/a/src/pkg/decoder.py": "from .model import Model\n",
        "packages/b/src/other/__init__.py": "import pkg.model\n",
    })
    assert cycles(import_graph(modules(tmp_path))) == [["pkg.decoder", "pkg.model"]]


def test_finds_a_cycle_across_packages_through_a_member_import(tmp_path):
    write(tmp_path, {
        "packages/a/src/core/__init__.py": "",
        "packages/a/src/core/backbone.py": "from plugin.model import Thing\n",
        "packages/b/src/plugin/__init__.py": "",
        "packages/b/src/plugin/model.py": "from core import backbone\n",
    })
    assert cycles(import_graph(modules(tmp_path))) == [["core.backbone", "plugin.model"]]


def test_type_checking_imports_and_package_reexports_are_not_cycles(tmp_path):
    write(tmp_path, {
        "packages/a/src/pkg/__init__.py": "from .model import Model\nfrom .decoder import Decoder\n",
        "packages/a/src/pkg/model.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .decoder import D\n",
        "packages/a/src/pkg/decoder.py": "from . import model\nfrom pkg import Model\n",
    })
    assert cycles(import_graph(modules(tmp_path))) == []

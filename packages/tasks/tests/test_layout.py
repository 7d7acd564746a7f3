"""The tasks package reads as a library: no task module imports from a sibling task module
anything but a registered task class it builds on (chat is a causal LM, matching a
classification); shared helpers live one floor down (``common``, ``heads``, ``lm_loss``…).
The entry-point module (``plugin``) and the package ``__init__`` are exempt."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import s2s_tasks
from s2s.plugins import get_plugins

PACKAGE = Path(s2s_tasks.__file__).parent
EXEMPT = {"plugin", "__init__"}


def registered_task_classes() -> dict[str, set[str]]:
    """Module name (``causal_lm``) -> names of the registered task classes it defines."""
    modules: dict[str, set[str]] = {}
    for entry in get_plugins().tasks.entries():
        module = entry.cls.__module__
        if module.startswith("s2s_tasks."):
            modules.setdefault(module.removeprefix("s2s_tasks."), set()).add(entry.cls.__name__)
    return modules


def sibling_imports(path: Path) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` of every ``from .module import name`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.extend((node.module.split(".")[0], alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s2s_tasks."):
            module = node.module.split(".")[1]
            found.extend((module, alias.name, node.lineno) for alias in node.names)
    return found


def test_task_modules_import_only_registered_task_classes_from_each_other(monkeypatch):
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "tasks")
    from s2s.plugins import reset_plugins

    reset_plugins()
    tasks = registered_task_classes()
    reset_plugins()
    assert {"seq2seq", "classification", "labeling", "chat", "matching"} <= set(tasks)
    offending = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem in EXEMPT or path.stem not in tasks:
            continue
        for module, name, line in sibling_imports(path):
            if module in tasks and module != path.stem and name not in tasks[module]:
                offending.append(f"{path.name}:{line} imports {name} from task module {module}")
    assert offending == []


def test_tasks_never_name_a_backbone_config_field():
    pattern = re.compile(r"n_positions|max_position_embeddings|word_embeddings|\.wte")
    hits = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_the_rule_catches_a_helper_imported_from_a_task_module(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from .classification import encode_truncated, Classification\n", encoding="utf-8")
    assert sibling_imports(bad) == [("classification", "encode_truncated", 1), ("classification", "Classification", 1)]

"""Rewrite the code deps of every stage in dvc.yaml from what its script imports.

    python scripts/sync_dvc_deps.py          # after adding, moving or importing an onpoint_core module

A stage's code deps are its script and every onpoint_core module (and package __init__) the script
imports, transitively: editing a module then reruns exactly the stages that run it, and editing
one they never import (the report, a benchmark) reruns none. Data deps (the non-.py entries) are
kept as they are. tests/test_params_layout.py fails when dvc.yaml and the imports disagree.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _module_file(name):
    path = REPO / Path(*name.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def _imported_names(path):
    """Every module name an `import` or `from ... import` in `path` may load (functions' imports too)."""
    tree = ast.parse(path.read_text())
    package = list(path.relative_to(REPO).parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def import_closure(script):
    """The script and every onpoint_core module it imports, transitively, as repo-relative paths."""
    seen, todo = set(), [REPO / script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            if not name.startswith("onpoint_core"):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return {str(p.relative_to(REPO)) for p in seen}


def main(path=REPO / "dvc.yaml"):
    text = path.read_text()
    for stage, spec in yaml.safe_load(text)["stages"].items():
        script = spec["cmd"].split()[-1]
        code = [script] + sorted(import_closure(script) - {script})
        data = [d for d in spec["deps"] if not d.endswith(".py")]
        block = re.compile(r"(  %s:\n    cmd: [^\n]*\n    deps:\n)((?:      - [^\n]*\n)+)" % re.escape(stage))
        match = block.search(text)
        if match is None:
            sys.exit(f"{path}: stage {stage}: expected `cmd:` then `deps:` as a list")
        text = text[:match.start(2)] + "".join(f"      - {d}\n" for d in code + data) + text[match.end(2):]
    path.write_text(text)


if __name__ == "__main__":
    main()

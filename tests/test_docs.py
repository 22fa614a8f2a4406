"""The repository carries its own documentation: nothing it ships points to a file outside it."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO_ROOT

# documents that exist only beside the repository (the method brief and the guide we received)
OUTSIDE = re.compile(r"METHOD\.md|PIPELINE\.md|implementation[-_ ]guide|\.\./shared/docs")
DOC_LINK = re.compile(r"docs/[A-Za-z0-9_./-]+\.md")


def shipped_text_files():
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the shipped files are the tracked ones")
    for name in listed.stdout.splitlines():
        path = REPO_ROOT / name
        if path.suffix in {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".txt", ".cfg"} and path.is_file():
            yield name, path.read_text(errors="replace")


def test_no_shipped_file_points_outside_the_repository():
    offenders = [f"{name}:{n}" for name, text in shipped_text_files() if name != "tests/test_docs.py"
                 for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, offenders


def test_every_docs_link_names_a_file_in_the_repository():
    missing = {(name, link) for name, text in shipped_text_files() for link in DOC_LINK.findall(text)
               if not (REPO_ROOT / link).is_file()}
    assert not missing, sorted(missing)

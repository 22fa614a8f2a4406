"""Model cards and checkpoint provenance: what a checkpoint says about itself."""

from __future__ import annotations

import json
import shutil
import subprocess

from click.testing import CliRunner

from onpoint_core.cli import main
from onpoint_core.provenance import code_blobs, code_commit, code_hash, git_blob_id, git_revision
from tests.test_online import checkpoints, one_thread  # noqa: F401  (fixtures)


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_code_hash_follows_the_stage_code_not_git(tmp_path):
    """The checkpoint's provenance must rebuild byte-identical in a fresh clone, a queued
    experiment's workspace or a tarball: a hash of the stage's code files, not a commit id."""
    repo = tmp_path / "repo"
    (repo / "onpoint_core").mkdir(parents=True)
    (repo / "onpoint_core" / "x.py").write_text("a = 1\n")
    (repo / "onpoint_core" / "y.py").write_text("b = 1\n")
    (repo / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    deps: [onpoint_core/x.py, data]\n")
    before = code_hash(repo, "train")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "code")
    assert code_hash(repo, "train") == before                     # git or not: the same code, the same hash
    copy = tmp_path / "tarball"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    assert code_hash(copy, "train") == before
    (repo / "onpoint_core" / "y.py").write_text("b = 2\n")        # code the stage does not run
    assert code_hash(repo, "train") == before and code_hash(repo) != code_hash(copy)
    (repo / "onpoint_core" / "x.py").write_text("a = 2\n")
    assert code_hash(repo, "train") != before
    # the run log's git facts: HEAD, and whether the stage's code differs from it (untracked too)
    head = git(repo, "rev-parse", "HEAD")
    assert git_revision(repo, "train") == {"commit": head, "dirty": True}
    git(repo, "checkout", "-q", "--", ".")
    assert git_revision(repo, "train") == {"commit": head, "dirty": False}
    (repo / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    deps: [onpoint_core/x.py, onpoint_core/z.py]\n")
    (repo / "onpoint_core" / "z.py").write_text("new = 1\n")
    assert git_revision(repo, "train")["dirty"] is True
    assert git_revision(copy, "train") == {"commit": None, "dirty": None}


def test_checkpoint_names_the_git_revision_of_its_code_by_content(tmp_path):
    """The checkpoint stores git blob ids of its stage's code (content, so a rebuild is byte-identical)
    and they resolve to the commit that introduced that code, not to HEAD at run time."""
    repo = tmp_path / "repo"
    (repo / "onpoint_core").mkdir(parents=True)
    (repo / "onpoint_core" / "x.py").write_text("a = 1\n")
    (repo / "onpoint_core" / "y.py").write_text("b = 1\n")
    (repo / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    deps: [onpoint_core/x.py]\n")
    git(repo, "init", "-q")
    blobs = code_blobs(repo, "train")
    assert code_commit(blobs, repo) is None                       # nothing committed yet
    assert blobs == {"onpoint_core/x.py": git(repo, "hash-object", "onpoint_core/x.py")}
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"   # git's empty blob
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "onpoint_core" / "y.py").write_text("b = 2\n")        # a commit that leaves the stage's code alone
    git(repo, "commit", "-qam", "other code")
    assert code_commit(blobs, repo) == first                       # not HEAD: the commit that brought this code
    (repo / "onpoint_core" / "x.py").write_text("a = 2\n")
    assert code_commit(code_blobs(repo, "train"), repo) is None   # uncommitted code
    git(repo, "commit", "-qam", "second")
    second = git(repo, "rev-parse", "HEAD")
    assert code_commit(code_blobs(repo, "train"), repo) == second and code_commit(blobs, repo) == first
    copy = tmp_path / "tarball"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    assert code_blobs(copy, "train") == code_blobs(repo, "train")  # no git needed to record it ...
    assert code_commit(blobs, copy) is None                        # ... only to resolve it


def test_card_says_what_the_model_is_and_where_its_numbers_come_from(tmp_path, checkpoints):  # noqa: F811
    (tmp_path / "online_eval.json").write_text(json.dumps({"avg_0.1_0.5": 41.25, "avg_0.3_0.7": 20.0,
                                                           "avg_0.1_0.7": 33.3, "f1_0.5": 30.0, "aedt": -0.5}))
    result = CliRunner().invoke(main, ["card", str(checkpoints["point"]), "--metrics", str(tmp_path / "online_eval.json"),
                                       "--out", str(tmp_path / "card.md")])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "card.md").read_text()
    for section in ("## Model", "## Training data and settings", "## Results", "## Use", "## Intended use and limits",
                    "## Provenance"):
        assert section in card
    assert "run `distillation_free`" in card and "point heads" in card
    assert "| 41.2 | 20.0 | 33.3 | 30.0 | -0.50 |" in card
    assert "window W = 8 steps" in card and "jump, run, throw" in card
    plain = CliRunner().invoke(main, ["card", str(checkpoints["point"])])
    assert plain.exit_code == 0 and "No test metrics given" in plain.output
    (tmp_path / "list.json").write_text("[1, 2]")
    wrong = CliRunner().invoke(main, ["card", str(checkpoints["point"]), "--metrics", str(tmp_path / "list.json")])
    assert wrong.exit_code == 1 and "list.json: expected the JSON object" in wrong.output
    bad = CliRunner().invoke(main, ["card", str(tmp_path / "nope.pt")])
    assert bad.exit_code == 1 and "nope.pt" in bad.output and "Traceback" not in bad.output

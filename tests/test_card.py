"""Model cards and checkpoint provenance: what a checkpoint says about itself."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from onpoint_core.cli import main
from onpoint_core.provenance import code_revision
from tests.test_online import checkpoints, one_thread  # noqa: F401  (fixtures)


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_code_revision_is_the_last_commit_of_the_code_not_head(tmp_path):
    """Committing a run's outputs after training moves HEAD but not the code: a fresh clone of that
    commit must record the same revision, or its rebuilt checkpoint would differ byte for byte."""
    repo = tmp_path / "repo"
    (repo / "onpoint_core").mkdir(parents=True)
    (repo / "onpoint_core" / "x.py").write_text("a = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "code")
    code = git(repo, "rev-parse", "HEAD")
    assert code_revision(repo) == {"commit": code, "dirty": False}
    (repo / "dvc.lock").write_text("outs\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "outputs")
    assert git(repo, "rev-parse", "HEAD") != code and code_revision(repo) == {"commit": code, "dirty": False}
    (repo / "onpoint_core" / "x.py").write_text("a = 2\n")
    assert code_revision(repo) == {"commit": code, "dirty": True}
    # a stage's revision follows only the code it runs (its .py deps in dvc.yaml)
    (repo / "onpoint_core" / "y.py").write_text("b = 1\n")
    (repo / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    deps: [onpoint_core/x.py, data]\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "other code")
    (repo / "onpoint_core" / "x.py").write_text("a = 1\n")
    git(repo, "commit", "-qam", "x back")
    x_commit = git(repo, "rev-parse", "HEAD")
    (repo / "onpoint_core" / "y.py").write_text("b = 2\n")
    git(repo, "commit", "-qam", "y only")
    assert code_revision(repo, "train") == {"commit": x_commit, "dirty": False}
    assert code_revision(repo)["commit"] == git(repo, "rev-parse", "HEAD")
    assert code_revision(tmp_path / "elsewhere") == {"commit": None, "dirty": False}


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
    missing = CliRunner().invoke(main, ["card", str(checkpoints["point"]), "--metrics", str(tmp_path / "none.json")])
    assert missing.exit_code == 0 and "No test metrics given" in missing.output
    bad = CliRunner().invoke(main, ["card", str(tmp_path / "nope.pt")])
    assert bad.exit_code == 1 and "nope.pt" in bad.output and "Traceback" not in bad.output

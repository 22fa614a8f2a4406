"""Changing a key reruns exactly the stages that read it: real `dvc status` in a temp git repo.

The project's dvc.yaml, params.yaml and code are copied into a fresh repository, every stage's
outputs are stand-in files, and `dvc commit --force` records the lock as if the pipeline had run.
Then one key at a time is changed and `dvc status --json` must name exactly the stages that
declare it (their downstream stages follow once their outputs change). `KEY_TABLE` is the table
of the issue note; run this file with `-s` to print it.
"""

import copy
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO_ROOT

# key -> stages that must report a change (default workspace: synthetic, hrpro, cpu)
KEY_TABLE = {
    "student.recipes.cpu.lr": {"student_train"},
    "student.recipes.paper.lr": set(),                       # the recipe not selected
    "student.recipes.cpu.epochs": {"student_train"},
    "student.patience": {"student_train"},
    "student.processes": {"student_train"},                   # execution settings: their own stage only
    "student.checkpoints_per_epoch": {"student_train"},
    "hrpro.detect.nms_sigma": {"teacher_cache"},
    "hrpro.detect.video_class_ratio": {"teacher_cache"},
    "hrpro.detect.predict_batch": {"teacher_cache"},
    "hrpro.pseudo.reliable_min_score": {"pseudo_segments"},
    "hrpro.proposals.oic_outer": {"teacher_cache", "pseudo_segments"},
    "hrpro.recipes.cpu.iterations": {"teacher_train"},
    "hrpro.train.lr": {"teacher_train"},
    "tsaspc.recipes.cpu.epochs": set(),                       # the teacher not selected
    "tsaspc.train.background_stamps": set(),
    "datasets.synthetic.generator.noise": {"dataset"},
    "datasets.synthetic.points.seed": {"points"},
    "datasets.synthetic.points.noise_seconds": {"points"},
    "datasets.synthetic.window": {"student_train"},
    "datasets.synthetic_dense.window": set(),                 # another dataset's entry
    "datasets.thumos14.window": set(),
    "online.score_threshold": {"student_train", "online_eval"},   # the val selection decodes with it too
    "online.tiou_floor_seconds": {"student_train", "online_eval"},
    "online.stream_batch": {"online_eval"},                   # execution only: not the selection
    "online.precision": {"online_eval"},                      # inference only: the selection stays fp32
    "hrpro.pseudo.min_point_coverage": {"pseudo_segments"},
    "teacher": {"teacher_train", "teacher_cache", "pseudo_segments"},
    "recipe": {"teacher_train", "student_train"},
}
NEW_VALUES = {"teacher": "tsaspc", "recipe": "paper", "hrpro.detect.video_class_ratio": 0.8,
              "hrpro.pseudo.reliable_min_score": 0.1, "tsaspc.train.background_stamps": False,
              "datasets.synthetic.points.noise_seconds": 1.5, "online.precision": "bf16"}

CODE = ("stages", "onpoint_core")
OUT_DIRS = ("data/dataset", "data/points", "data/teacher", "data/pseudo", "data/online", "data/imported",
            "plots/online", "plots/teacher_timelines", "live/teacher_train", "live/student_train")
OUT_FILES = ("models/teacher.pt", "models/student.pt", "metrics/teacher_train.json", "metrics/teacher_cache.json",
             "metrics/pseudo_segments.json", "metrics/student_train.json", "metrics/online_eval.json",
             "metrics/teacher_loss.csv", "metrics/teacher_terms.csv", "metrics/student_epochs.csv",
             "metrics/student_loss.csv", "metrics/student_terms.csv", "metrics/online_pr.csv")


def _run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A repo whose dvc.lock matches its params and stand-in outputs (nothing to rerun)."""
    repo = tmp_path_factory.mktemp("reruns") / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO_ROOT / name, repo / name)
    for folder in CODE:
        shutil.copytree(REPO_ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in OUT_DIRS:
        (repo / folder).mkdir(parents=True)
        (repo / folder / "stand-in.txt").write_text(folder)
    for name in OUT_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("{}\n" if name.endswith(".json") else "step,loss\n1,1\n")
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"], [*dvc, "config", "core.analytics", "false"],
                [*dvc, "commit", "--force", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "stand-in"]):
        _run(cmd, repo, env)
    assert json.loads(_run([*dvc, "status", "--json"], repo, env)) == {}
    return repo, env, dvc


def _changed_stages(committed, key):
    repo, env, dvc = committed
    original = (repo / "params.yaml").read_text()
    raw = yaml.safe_load(original)
    node, parts = raw, key.split(".")
    for part in parts[:-1]:
        node = node[part]
    old = node[parts[-1]]
    node[parts[-1]] = NEW_VALUES[key] if key in NEW_VALUES else old + 1 if isinstance(old, int) else old * 2
    try:
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        status = json.loads(_run([*dvc, "status", "--json"], repo, env))
    finally:
        (repo / "params.yaml").write_text(original)
    return {stage.split(":")[-1] for stage in status}


@pytest.mark.parametrize("key", list(KEY_TABLE))
def test_changing_a_key_reruns_exactly_its_stages(committed, key):
    assert _changed_stages(committed, key) == KEY_TABLE[key]


def test_every_key_of_the_table_exists():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for key in KEY_TABLE:
        node = copy.deepcopy(raw)
        for part in key.split("."):
            node = node[part]

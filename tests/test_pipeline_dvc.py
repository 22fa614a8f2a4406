"""The DVC pipeline for real: a temp git repo holding the project, `dvc repro`, `dvc exp run -S`."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
# outputs of a run in the developer's checkout: the temp project makes its own
GENERATED = ("metrics/", "dvc.lock", "data/dataset", "data/points", "data/teacher", "data/pseudo", "data/online",
             "models/", "plots/")


def _run(args, cwd, env, check=True):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _shrink(params):
    """Tiny sizes so a full repro takes seconds on 2 cores (each key where params.yaml keeps it)."""
    entry = params["datasets"]["synthetic"]
    # one val video of ten, as before the default split grew to 0.25 (a one-epoch student on 8 training
    # videos emits nothing above the threshold below)
    entry["generator"].update(num_train_videos=10, num_test_videos=4, video_seconds=[40, 60], val_fraction=0.1)
    entry["train_stride"] = 4
    params["hrpro"]["recipes"]["cpu"]["iterations"] = 3
    params["hrpro"]["train"]["videos_per_iteration"] = 4
    params["student"]["recipes"]["cpu"].update(d_model=32, ffn_dim=64, batch_size=16, epochs=1)
    params["online"]["stream_batch"] = 8
    # a one-epoch student's class probabilities stay near 1/(C+1) < 0.1: a low threshold, so that it
    # emits proposals for the checks of the streamed output (results.json, onpoint predict)
    params["online"]["score_threshold"] = 0.02
    return params


@pytest.fixture
def project(tmp_path):
    """A git repository with the project's files (tracked and new), tiny params, one commit."""
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        src = REPO_ROOT / name
        if src.is_file() and not name.startswith(GENERATED):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    params = _shrink(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(repo), "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        _run(cmd, repo, env)
    return repo, env


def _dvc(repo, env, *args, check=True):
    return _run([sys.executable, "-m", "dvc", *args], repo, env, check)


def test_repro_then_noop_then_experiment(project):
    repo, env = project
    repro = _dvc(repo, env, "repro")
    dataset = json.loads((repo / "logs" / "dataset.json").read_text())
    points = json.loads((repo / "logs" / "points.json").read_text())
    assert dataset["videos"]["test"] == 4 and dataset["instances"] > 0
    assert points["num_points"] > 0 and points["videos_without_points"] >= 0
    student = json.loads((repo / "metrics" / "student_train.json").read_text())
    online = json.loads((repo / "metrics" / "online_eval.json").read_text())
    online_log = json.loads((repo / "logs" / "online_eval.json").read_text())
    assert student["final_cass"] is not None and "seconds" not in student
    assert set(online["mAP"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"} and "speed" not in online
    assert online_log["run"] == "onpoint" and online_log["teacher_offline"]["num_gt"] == online_log["num_gt"] > 0
    # every DVC metric is a result: no timings, devices, counts or strings, no duplicate average
    shown = json.loads(_dvc(repo, env, "metrics", "show", "--json").stdout)
    keys, values = [], []

    def walk(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                keys.append(prefix + key)
                values.append(value)
    walk(shown)
    assert not any(word in k for k in keys for word in ("seconds", "device", "threads", "average", "num_", "run"))
    assert all(v is None or isinstance(v, (int, float)) for v in values)
    assert (repo / "models" / "student.pt").exists() and (repo / "plots" / "online" / "precision_recall.png").exists()
    # off a terminal every stage logs lines that stay (no bar redraws), kept in logs/<stage>.log too
    student_log = (repo / "logs" / "student_train.log").read_text()
    assert "student epoch 1/" in student_log and "val avg" in student_log
    # the repro's own output (not a terminal): progress as lines that stay, never redraws
    assert "\r" not in repro.stdout + repro.stderr
    assert re.search(r"student epoch 1/\d+: \d+/\d+ batch \(\d+%\)", repro.stdout + repro.stderr)
    assert all((repo / "logs" / f"{stage}.log").is_file() for stage in ("dataset", "teacher_train", "online_eval"))
    # live curves (dvclive): a row per student epoch and per teacher iteration, one file per term
    live = repo / "live" / "student_train" / "plots" / "metrics"
    epochs = pd.read_csv(repo / "metrics" / "student_epochs.csv")
    assert {p.name for p in live.glob("*.tsv")} == {"total.tsv", "L_ins.tsv", "L_cass.tsv", "L_ant.tsv", "L_pnt.tsv",
                                                     "val_avg_0.1_0.7.tsv", "lr.tsv"}
    assert pd.read_csv(live / "total.tsv", sep="\t").total.tolist() == pytest.approx(epochs.loss.tolist())
    teacher_live = pd.read_csv(repo / "live" / "teacher_train" / "plots" / "metrics" / "total.tsv", sep="\t")
    assert len(teacher_live) == 3                                  # _shrink: 3 HR-Pro iterations
    # every plot of dvc.yaml renders: titled curves, the live ones, the PNGs
    shown = json.loads(_dvc(repo, env, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown.get("errors")
    assert any(name.startswith("Student L_ins per epoch (live)") for name in shown["data"])
    # the proposals also come as ActivityNet JSON, and score the same through `onpoint evaluate`
    scored = {}
    for pred in ("data/online/proposals.parquet", "data/online/results.json"):
        out = _run([sys.executable, "-m", "onpoint_core.cli", "evaluate", "--gt", "data/dataset/segments.parquet",
                    "--pred", pred, "--videos", "data/dataset/videos.parquet"], repo, env)
        scored[pred] = json.loads(out.stdout)
    parquet, activitynet = scored.values()
    assert activitynet["num_pred"] == parquet["num_pred"] > 0
    assert activitynet["avg_0.1_0.7"] == pytest.approx(parquet["avg_0.1_0.7"], rel=1e-12)
    assert activitynet["avg_0.1_0.7"] == pytest.approx(online["avg_0.1_0.7"], rel=1e-12)
    # `onpoint predict` over every video's features gives the stage's proposals for the test videos
    _run([sys.executable, "-m", "onpoint_core.cli", "predict", "--model", "models/student.pt", "--features",
          "data/dataset/features", "--durations", "data/dataset/videos.parquet", "--out", "predicted.parquet"], repo, env)
    videos = pd.read_parquet(repo / "data" / "dataset" / "videos.parquet")
    predicted = pd.read_parquet(repo / "predicted.parquet")
    predicted = predicted[predicted.video_id.isin(videos.video_id[videos.subset == "test"])]
    staged = pd.read_parquet(repo / "data" / "online" / "proposals.parquet")
    order = ["video_id", "gen_time", "label", "start"]
    pd.testing.assert_frame_equal(predicted.sort_values(order).reset_index(drop=True),
                                  staged.sort_values(order).reset_index(drop=True), check_exact=False, atol=1e-5)
    (repo / "predicted.parquet").unlink()
    # the checkpoint describes itself: the online settings it was selected with, its val score, the code
    payload = torch.load(repo / "models" / "student.pt", weights_only=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert payload["extra"]["online"] == {k: params["online"][k] for k in ("score_threshold", "nms_iou",
                                                                          "tiou_floor_seconds")}
    assert payload["extra"]["val_avg_0.1_0.7"] == student["val_avg_0.1_0.7"] and payload["extra"]["package_version"]
    from onpoint_core.provenance import code_hash
    assert payload["extra"]["code_sha256"] == code_hash(repo, "student_train")
    card = _run([sys.executable, "-m", "onpoint_core.cli", "card", "models/student.pt", "--metrics",
                 "metrics/online_eval.json"], repo, env).stdout
    assert "## Intended use and limits" in card and f"| {online['avg_0.1_0.5']:.1f} |" in card
    # ... and the git revision it was trained at: the project's one commit holds the code it ran
    head = _run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    assert f"trained on the code of commit `{head}`" in card

    # the stages an experiment on another dataset or teacher shares are in DVC's run-cache, so such an
    # experiment restores its teacher instead of retraining it (a `cache: false` output that is no
    # metric or plot switches the run-cache off for its stage)
    cache_dir = repo / Path(_dvc(repo, env, "cache", "dir").stdout.strip())
    cached_cmds = {yaml.safe_load(entry.read_text())["cmd"] for entry in (cache_dir / "runs").glob("*/*/*")}
    for script in ("make_dataset", "make_points", "train_teacher", "cache_teacher", "pseudo_segments"):
        assert f"python stages/{script}.py" in cached_cmds, f"{script} is not in the run-cache"

    again = _dvc(repo, env, "repro")
    assert "Data and pipelines are up to date" in again.stdout
    status = _dvc(repo, env, "status")
    assert "up to date" in status.stdout

    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "baseline"], repo, env)
    _dvc(repo, env, "exp", "run", "-S", "datasets.synthetic.generator.noise=0.9", "-n", "noisier")
    table = pd.read_csv(io.StringIO(_dvc(repo, env, "exp", "show", "--csv").stdout))
    noise = next(c for c in table.columns if c.endswith("generator.noise"))
    mean_points = next(c for c in table.columns if c.endswith("avg_0.1_0.7"))
    baseline = table[(table.typ == "baseline") & (table.rev != "workspace")]  # the committed run
    experiment = table[table.Experiment == "noisier"]
    assert len(experiment) == 1 and len(baseline) >= 1
    assert float(experiment[noise].iloc[0]) == 0.9 and float(baseline[noise].iloc[0]) == 0.4
    assert experiment[mean_points].notna().all()

    # a run of the comparison is one parameter: only the student stages rerun
    result = _dvc(repo, env, "exp", "run", "-S", "student.run=distillation_free", "-n", "dfree")
    assert "Stage 'teacher_train' didn't change, skipping" in result.stdout
    table = pd.read_csv(io.StringIO(_dvc(repo, env, "exp", "show", "--csv").stdout))
    run_column = next(c for c in table.columns if c.endswith("student.run"))
    assert table.loc[table.Experiment == "dfree", run_column].iloc[0] == "distillation_free"

    # the comparison report reads the experiments back: one row per run, the paper's numbers beside
    report = _run([sys.executable, "-m", "onpoint_core.cli", "report"], repo, env)
    assert "reports/comparison.md" in report.stdout
    text = (repo / "reports" / "comparison.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    onpoint = [r for r in rows if r.startswith("| onpoint")]          # the baseline and the noise-0.9 run
    dfree = [r for r in rows if r.startswith("| distillation_free")]
    assert len(onpoint) == 2 and len(dfree) == 1
    assert all("61.9 / 51.1" in r for r in onpoint) and "33.3 / 24.8" in dfree[0]
    assert (repo / "reports" / "comparison.png").read_bytes().startswith(b"\x89PNG")
    # --readme writes the same table between the markers of a document and keeps the rest
    (repo / "notes.md").write_text("# Notes\n\nbefore\n<!-- comparison:start -->\nold table\n<!-- comparison:end -->\nafter\n")
    _run([sys.executable, "-m", "onpoint_core.cli", "report", "--readme", "notes.md"], repo, env)
    notes = (repo / "notes.md").read_text()
    inside = notes.split("<!-- comparison:start -->\n")[1].split("<!-- comparison:end -->")[0]
    assert "old table" not in notes and notes.startswith("# Notes\n\nbefore\n") and notes.endswith("after\n")
    assert inside.strip() == text.strip()
    (repo / "plain.md").write_text("no markers here\n")
    unmarked = _run([sys.executable, "-m", "onpoint_core.cli", "report", "--readme", "plain.md"], repo, env, check=False)
    assert unmarked.returncode != 0 and "plain.md: no <!-- comparison:start -->" in unmarked.stderr
    assert (repo / "plain.md").read_text() == "no markers here\n"
    # a dataset filter that matches no experiment stops with one line naming the entry
    none = _run([sys.executable, "-m", "onpoint_core.cli", "report", "--dataset", "synthetic_dense",
                 "--out", "reports/dense.md", "--png", "reports/dense.png"], repo, env, check=False)
    assert none.returncode != 0 and "no experiment on synthetic_dense" in none.stderr
    assert not (repo / "reports" / "dense.md").exists()


def test_bad_param_stops_repro_with_the_key(project):
    repo, env = project
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["datasets"]["synthetic"]["window"] = 0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = _dvc(repo, env, "repro", check=False)
    assert result.returncode != 0
    assert "datasets.synthetic.window: must be > 0, got 0" in result.stdout + result.stderr
    assert not (repo / "data" / "dataset").exists()

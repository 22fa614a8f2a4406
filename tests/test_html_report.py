"""`onpoint report --html`: one self-contained page (images inline, no CDN, no script), checked for
what it holds and rendered in a real headless Chromium (skipped with a reason where it is absent)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from onpoint_core.evaluation.plots import per_class_ap_png, pr_curve_png, stream_timeline_png
from onpoint_core.html_report import html_page
from onpoint_core.report import experiment_rows, summarise
from tests.test_evaluation import _exp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def page(tmp_path):
    """A repo whose commit holds a PR curve (as online_eval commits it) and a workspace with plots;
    experiments of two runs, two seeds each, pointing at that commit."""
    repo = tmp_path / "repo"
    online = repo / "plots" / "online"
    online.mkdir(parents=True)
    rng = np.random.default_rng(0)
    recall = np.sort(rng.random(50))
    curves = pd.DataFrame({"tiou": np.repeat([0.3, 0.5], 50), "recall": np.r_[recall, recall * 0.8],
                           "precision": np.r_[1 - recall / 2, 0.9 - recall / 2]})
    pr_curve_png(online / "precision_recall.png", curves)
    per_class_ap_png(online / "per_class_ap.png", {"jump": {"0.5": 40.0}, "run": {"0.5": 65.0}})
    gt = pd.DataFrame({"video_id": "v1", "label": ["jump", "run"], "start": [2.0, 9.0], "end": [5.0, 14.0]})
    proposals = gt.assign(start=gt.start + 0.3, score=[0.8, 0.6], gen_time=gt.end + 0.5)
    stream_timeline_png(online / "timeline_v1.png", "v1", 20.0, ["jump", "run"], gt, proposals)
    (repo / "metrics").mkdir()
    pd.DataFrame({"epoch": [1, 2, 1, 2], "term": ["total", "total", "L_ins", "L_ins"],
                  "value": [2.0, 1.5, 0.5, 0.4]}).to_csv(repo / "metrics" / "student_terms.csv", index=False)
    pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.5], "val_avg": [10.0, 20.0]}).to_csv(
        repo / "metrics" / "student_epochs.csv", index=False)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "run")
    rev = git(repo, "rev-parse", "HEAD")
    baseline = _exp("main", "onpoint", 52, 30.0)["revs"][0]
    baseline["experiments"] = [_exp(name, run, seed, avg, "success") for name, run, seed, avg in
                               [("o-s52", "onpoint", 52, 30.0), ("o-s53", "onpoint", 53, 34.0),
                                ("t-s52", "teacher_oat", 52, 20.0), ("t-s53", "teacher_oat", 53, 22.0)]]
    rows = experiment_rows([baseline])
    for row in rows:
        row["rev"] = rev
    text = html_page(summarise(rows), rows, "Produced by a test.", repo=repo, commit=rev[:7])
    (tmp_path / "report.html").write_text(text)
    return tmp_path / "report.html", text


def test_the_page_is_self_contained(page):
    _, text = page
    assert not re.search(r"<(script|link|iframe)\b", text, re.I)           # nothing to fetch, nothing to run
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text, re.I)
    images = re.findall(r'<img src="([^"]+)"', text)
    assert len(images) == 1 + 2 + 4      # bar chart, a PR curve per row, the workspace's curves and three plots
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "<td>onpoint</td><td>2</td>" in text and "<td>teacher_oat</td><td>2</td>" in text
    assert "32.0 ± 2.8" in text                    # mean and sample sd of 30 and 34


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian package `chromium`); the page is checked "
                                             "for self-containment above, the rendering is not")
def test_the_page_renders_in_headless_chromium(page, tmp_path):
    from PIL import Image

    path, _ = page
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1300,1800", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (1800, 1300)
    # not a blank page: many colours, and the blue of the bars and curves is there
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 200
    blue = (image[..., 2] > 150) & (image[..., 0] < 80) & (image[..., 1] > 80) & (image[..., 1] < 160)
    assert blue.sum() > 2000

"""`onpoint report --html FILE`: one self-contained HTML page of a run or a set of experiments.

The page carries everything inline (images as data: URIs, CSS in the page, no script), so it opens
offline, can be mailed or attached to an issue, and shows the same in every browser:
- the comparison table of the experiments (the same rows as the Markdown report) and its bar chart;
- the precision-recall curve of each row's first experiment (read from its git revision, where the
  online_eval stage committed it), so rows can be compared by shape, not only by one number;
- the workspace run's training curves (drawn here with matplotlib: `dvc plots show` needs Vega from a
  CDN), PR per tIoU, per-class AP, a few stream timelines and teacher timelines.
"""

from __future__ import annotations

import base64
import html
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .report import THRESHOLDS, _base_run, _cell, _ordered, bar_chart_figure, png_bytes

ONLINE_PLOTS = "plots/online"
TEACHER_PLOTS = "plots/teacher_timelines"
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.teacher td { color: #555; font-style: italic; }
.scroll { overflow-x: auto; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.85em; color: #444; text-align: center; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def data_uri(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(png, caption, width=None):
    style = f' style="width:{width}px"' if width else ""
    return (f'<figure><img src="{data_uri(png)}" alt="{html.escape(caption)}"{style}>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(summary, dataset):
    runs = _ordered(r for d, r in summary if d == dataset)
    head = (["run", "seeds"] + [f"mAP@{t}" for t in THRESHOLDS]
            + ["avg 0.1:0.5", "avg 0.1:0.7", "F1@0.5", "AEDT (s)", "val avg 0.1:0.7"])
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for run in runs:
        s = summary[(dataset, run)]
        cells = ([run, str(len(s["seeds"]))] + [_cell(s[t]) for t in THRESHOLDS]
                 + [_cell(s["avg_0.1_0.5"]), _cell(s["avg_0.1_0.7"]), _cell(s["f1_0.5"]), _cell(s["aedt"], 2),
                    _cell(s["val_avg_0.1_0.7"])])
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    teacher = [summary[(dataset, r)]["teacher_avg_0.1_0.7"][0] for r in runs]
    teacher = [t for t in teacher if t is not None]
    if teacher:
        cells = ["offline teacher (sees whole videos)"] + [""] * (len(head) - 5) + [f"{teacher[0]:.1f}", "", "", ""]
        rows.append('<tr class="teacher">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return '<div class="scroll"><table>' + "".join(rows) + "</table></div>"


def _git_file(repo, rev, path):
    """The bytes of `path` at git revision `rev`, or None."""
    try:
        done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.startswith(b"\x89PNG") else None


def row_curves(repo, rows, summary):
    """{(dataset, label): PNG} of the PR curve of each row's first experiment (by seed)."""
    curves = {}
    for (dataset, label), stats in summary.items():
        members = [r for r in rows if r["dataset"] == dataset and _base_run(label) == r["run"]]
        members = sorted(members, key=lambda r: (r["seed"] is None, r["seed"]))
        for member in members:
            png = _git_file(repo, member["rev"], f"{ONLINE_PLOTS}/precision_recall.png")
            if png:
                curves[(dataset, label)] = png
                break
    return curves


def training_curves_png(repo):
    """The workspace run's training curves as one PNG (matplotlib, so the page needs no Vega):
    each student loss term and the val score per epoch, and the teacher's loss terms; None when
    the curve files are absent."""
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    repo = Path(repo)
    student, teacher = repo / "metrics" / "student_terms.csv", repo / "metrics" / "teacher_terms.csv"
    epochs = repo / "metrics" / "student_epochs.csv"
    if not (student.is_file() or teacher.is_file()):
        return None
    figure = Figure(figsize=(13, 3.6))
    axes = figure.subplots(1, 3)
    for ax, path, x, title in ((axes[0], student, "epoch", "student loss terms per epoch"),
                               (axes[2], teacher, "step", "teacher loss terms per step")):
        if path.is_file():
            table = pd.read_csv(path)
            for term, part in table.groupby("term", sort=False):
                ax.plot(part[x], part["value"], label=term, linewidth=1.2)
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    if epochs.is_file():
        table = pd.read_csv(epochs)
        if "val_avg" in table and table.val_avg.notna().any():
            axes[1].plot(table.epoch, table.val_avg, marker="o", linewidth=1.2, color="tab:green")
            best = table.val_avg.idxmax()
            axes[1].axvline(table.epoch[best], color="tab:red", linestyle="--", linewidth=1,
                            label=f"kept: epoch {int(table.epoch[best])}")
            axes[1].legend(fontsize=7)
    axes[1].set_title("student val avg mAP 0.1:0.7 per epoch", fontsize=10)
    axes[1].set_xlabel("epoch")
    axes[1].grid(alpha=0.3)
    figure.tight_layout()
    FigureCanvasAgg(figure)
    return png_bytes(figure)


def workspace_figures(repo, timelines=3):
    """(caption, PNG) of the workspace run's plots, in reading order."""
    repo = Path(repo)
    found = []
    curves = training_curves_png(repo)
    if curves is not None:
        found.append(("training curves (from metrics/*_terms.csv and student_epochs.csv)", curves))
    for name, caption in (("precision_recall.png", "online precision-recall per tIoU"),
                          ("per_class_ap.png", "per-class AP at tIoU 0.5")):
        path = repo / ONLINE_PLOTS / name
        if path.is_file():
            found.append((caption, path.read_bytes()))
    for path in sorted((repo / ONLINE_PLOTS).glob("timeline_*.png"))[:timelines]:
        found.append((f"stream timeline {path.stem.removeprefix('timeline_')}", path.read_bytes()))
    for path in sorted((repo / TEACHER_PLOTS).glob("*.png"))[:2]:
        found.append((f"teacher timeline {path.stem} (GT, points, CAS, pseudo segments)", path.read_bytes()))
    return found


def html_page(summary, rows, header, repo=".", commit=""):
    """The whole page as one string."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>OnPoint report</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>OnPoint: online action localisation from points</h1>",
             f'<p class="meta">{html.escape(header.strip())}<br>Written {stamp}'
             f"{' at commit ' + html.escape(commit) if commit else ''}.</p>"]
    datasets = sorted({d for d, _ in summary})
    parts.append("<h2>Comparison</h2>")
    for dataset in datasets:
        parts += [f"<h3>{html.escape(str(dataset))}</h3>", _table(summary, dataset)]
    parts.append(_figure(png_bytes(bar_chart_figure(summary)), "online mAP avg 0.1:0.7 per run (seed spread as "
                                                                "error bars)", width=800))
    curves = row_curves(repo, rows, summary)
    if curves:
        parts += ["<h2>Precision-recall of each row</h2>",
                  "<p>The first seed's curve of every row, as its online_eval stage drew it.</p>",
                  '<div class="gallery">']
        for dataset in datasets:
            for label in _ordered(r for d, r in summary if d == dataset):
                if (dataset, label) in curves:
                    parts.append(_figure(curves[(dataset, label)], f"{dataset}: {label}", width=380))
        parts.append("</div>")
    figures = workspace_figures(repo)
    if figures:
        parts += ["<h2>The workspace run</h2>", '<div class="gallery">']
        parts += [_figure(png, caption, width=None if "timeline" in caption or "training" in caption else 560)
                  for caption, png in figures]
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)

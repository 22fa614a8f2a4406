"""The comparison report: DVC experiments (`dvc exp show --json`) -> a Markdown table and a bar chart.

Each experiment contributes one row: its dataset, `student.run`, `student.seed`, and the
online_eval metrics. Rows of the same dataset and run (different seeds) are summarised as mean and
spread (sample standard deviation), so a difference can be told from seed noise. The paper's
THUMOS'14 numbers (docs/method.md 7) are printed beside ours for orientation only: a different dataset.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict

from .errors import OnPointError

ONLINE_METRICS = "metrics/online_eval.json"
TEACHER_METRICS = "metrics/teacher_cache.json"
STUDENT_METRICS = "metrics/student_train.json"   # val_avg_0.1_0.7: the score the epoch was selected on
THRESHOLDS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7")
RUN_ORDER = ("onpoint", "teacher_oat", "distillation_free", "fully_supervised",
             "no_cass_anticipation", "no_calibration", "no_point_supervision")

# docs/method.md 7, THUMOS'14: mAP at 0.1..0.5, avg 0.1:0.5, avg 0.1:0.7 (None: not reported)
PAPER_THUMOS = {
    "onpoint": ((73.6, 70.3, 63.9, 56.3, 45.2), 61.9, 51.1),
    "teacher_oat": ((66.6, 63.7, 58.7, 49.3, 40.1), 55.7, 46.3),
    "distillation_free": ((59.9, 45.8, 31.8, 18.4, 10.3), 33.3, 24.8),
}
PAPER_ABLATION_DROP = {"no_cass_anticipation": -4.4, "no_calibration": -2.0, "no_point_supervision": -3.5}

# The paper's orderings (THUMOS'14, avg mAP 0.1:0.7): (higher run, lower run, wording, paper gap or None)
ORDERINGS = (
    ("onpoint", "teacher_oat", "OnPoint > teacher + OAT", PAPER_THUMOS["onpoint"][2] - PAPER_THUMOS["teacher_oat"][2]),
    ("onpoint", "distillation_free", "OnPoint > distillation-free",
     PAPER_THUMOS["onpoint"][2] - PAPER_THUMOS["distillation_free"][2]),
    ("teacher_oat", "distillation_free", "teacher + OAT > distillation-free",
     PAPER_THUMOS["teacher_oat"][2] - PAPER_THUMOS["distillation_free"][2]),
    ("fully_supervised", "onpoint", "fully supervised >= OnPoint (upper bound)", None),
    ("onpoint", "no_cass_anticipation", "OnPoint > without CASS + anticipation", -PAPER_ABLATION_DROP["no_cass_anticipation"]),
    ("onpoint", "no_calibration", "OnPoint > without calibration", -PAPER_ABLATION_DROP["no_calibration"]),
    ("onpoint", "no_point_supervision", "OnPoint > without point supervision", -PAPER_ABLATION_DROP["no_point_supervision"]),
)


def read_experiments(repo=".", all_commits=False, dvc=None):
    """`dvc exp show --json` of `repo` as parsed JSON (one-line error when DVC fails); experiments
    of the current commit, or of every commit with `all_commits`."""
    command = dvc or [sys.executable, "-m", "dvc"]
    extra = ["--all-commits"] if all_commits else []
    result = subprocess.run([*command, "exp", "show", "--json", *extra], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise OnPointError(f"dvc exp show failed in {repo}: {result.stderr.strip().splitlines()[-1:]}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise OnPointError(f"dvc exp show in {repo} did not print JSON") from None


def _walk(entries, state=None, baseline=None):
    """(entry, executor state, baseline commit) for every commit and experiment; the state is None
    for commits and for experiments run in the workspace, else queued / running / success / failed;
    the baseline is the commit the experiment ran from (a commit's own rev for itself)."""
    for entry in entries or []:
        base = baseline or entry.get("rev")
        yield entry, state, base
        for group in entry.get("experiments") or []:
            yield from _walk(group.get("revs"), (group.get("executor") or {}).get("state"), base)


def experiment_rows(exp_show):
    """One dict per finished experiment (and the baseline/workspace) that has online_eval metrics.

    A queued, running or failed experiment is skipped: its commit still holds the metrics files of
    the commit it started from (they are tracked by git), which would pass for its own results.
    The run and the dataset come from the experiment's params; the teacher's offline row from
    metrics/teacher_cache.json."""
    rows, seen = [], set()
    for entry, state, baseline in _walk(exp_show):
        if state not in (None, "success"):
            continue
        data = entry.get("data") or {}
        metrics = ((data.get("metrics") or {}).get(ONLINE_METRICS) or {}).get("data")
        teacher = ((data.get("metrics") or {}).get(TEACHER_METRICS) or {}).get("data") or {}
        student_metrics = ((data.get("metrics") or {}).get(STUDENT_METRICS) or {}).get("data") or {}
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
        if not metrics or not params or point_noise(params):
            continue                        # (the point-noise study has its own report)
        name = entry.get("name") or entry.get("rev")
        key = (name, entry.get("rev"))
        if key in seen:
            continue
        seen.add(key)
        student = params.get("student") or {}
        others = _canonical(json.loads(json.dumps(params, sort_keys=True, default=str)))
        (others.get("student") or {}).pop("seed", None)
        rows.append({
            "params_without_seed": json.dumps(others, sort_keys=True),
            "params": json.dumps(_canonical(params), sort_keys=True, default=str),
            "experiment": name, "rev": str(data.get("rev") or entry.get("rev")), "baseline": str(baseline),
            "dataset": params.get("dataset"), "run": student.get("run"),
            "seed": student.get("seed"),
            "mAP": {k: metrics.get("mAP", {}).get(k) for k in THRESHOLDS},
            "avg_0.1_0.5": metrics.get("avg_0.1_0.5"), "avg_0.1_0.7": metrics.get("avg_0.1_0.7"),
            "f1_0.5": metrics.get("f1_0.5"), "aedt": metrics.get("aedt"),
            "teacher_avg_0.1_0.7": (teacher.get("offline_test") or {}).get("avg_0.1_0.7"),
            "val_avg_0.1_0.7": student_metrics.get("val_avg_0.1_0.7"),
        })
    return rows


def _canonical(value):
    """Params with every number as a float: `-S key=0` writes 0 where params.yaml has 0.0, and
    the two are the same run (grouping and de-duplication compare these)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def point_noise(params):
    """The point-noise std (s) of an experiment's params: datasets.<dataset>.points.noise_seconds."""
    datasets = params.get("datasets")
    entry = datasets.get(params.get("dataset")) if isinstance(datasets, dict) else None
    points = entry.get("points") if isinstance(entry, dict) else None
    # (an experiment of an older params layout, listed by --all-commits, has no such entry: no noise)
    return float((points.get("noise_seconds") if isinstance(points, dict) else None) or 0.0)


def _mean_spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarise(rows):
    """Group experiments whose params differ only in student.seed: {(dataset, label): {metric: (mean, sd),
    "seeds": [...]}}. The label is the run's name, plus the first experiment's name when experiments
    of one run differ in other params too (e.g. a noise sweep)."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["run"], row["params_without_seed"])].append(row)
    variants = defaultdict(int)
    for dataset, run, _ in groups:
        variants[(dataset, run)] += 1
    out = {}
    for (dataset, run, _), members in groups.items():
        # identical params (the workspace and the commit it ran from): count once, and keep the first,
        # which is the workspace (`dvc exp show` lists it first): after a `dvc repro` whose results
        # differ from the committed ones (another CPU's float rounding, say) the table shows what ran
        first = {}
        for member in members:
            first.setdefault(member["params"], member)
        unique = list(first.values())
        label = run if variants[(dataset, run)] == 1 else f"{run} ({sorted(m['experiment'] for m in unique)[0]})"
        key = (dataset, label)
        summary = {"seeds": sorted(m["seed"] for m in unique)}
        for t in THRESHOLDS:
            summary[t] = _mean_spread([m["mAP"][t] for m in unique])
        for metric in ("avg_0.1_0.5", "avg_0.1_0.7", "f1_0.5", "aedt", "teacher_avg_0.1_0.7", "val_avg_0.1_0.7"):
            summary[metric] = _mean_spread([m[metric] for m in unique])
        out[key] = summary
    return out


def _base_run(label):
    return label.split(" ")[0]


def _ordered(labels):
    return sorted(labels, key=lambda r: (RUN_ORDER.index(_base_run(r)) if _base_run(r) in RUN_ORDER else 99, r))


def _cell(pair, digits=1):
    mean, spread = pair
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" if spread is None else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def verdict(gap, spread_a, spread_b):
    """Whether `gap` (higher run minus lower run) holds beyond 2 sd: twice the larger of the two
    rows' sample standard deviations (a conservative rule for 3 seeds). A spread of None (one
    seed) leaves no sd to judge by, and the verdict says so."""
    if spread_a is None or spread_b is None:
        return "one seed: no sd" if gap > 0 else "reversed, one seed: no sd"
    threshold = 2 * max(spread_a, spread_b)
    if gap > threshold:
        return "holds beyond 2 sd"
    if gap > 0:
        return "same sign, within 2 sd"
    return "reversed beyond 2 sd" if -gap > threshold else "reversed, within 2 sd"


def orderings(summary, dataset):
    """The paper's orderings on one dataset's rows, as Markdown lines (rows not run are said so)."""
    lines = ["| ordering (paper) | paper gap | our gap (avg 0.1:0.7) | 2 x larger sd | seeds | verdict |",
             "|---|---|---|---|---|---|"]
    for high, low, text, paper in ORDERINGS:
        paper_cell = "" if paper is None else f"{paper:+.1f}"
        if (dataset, high) not in summary or (dataset, low) not in summary:
            lines.append(f"| {text} | {paper_cell} | not run yet | | | |")
            continue
        (mean_a, sd_a), (mean_b, sd_b) = summary[(dataset, high)]["avg_0.1_0.7"], summary[(dataset, low)]["avg_0.1_0.7"]
        if mean_a is None or mean_b is None:
            lines.append(f"| {text} | {paper_cell} | n/a | | | |")
            continue
        gap = mean_a - mean_b
        threshold = "" if sd_a is None or sd_b is None else f"{2 * max(sd_a, sd_b):.1f}"
        seeds = f"{len(summary[(dataset, high)]['seeds'])} / {len(summary[(dataset, low)]['seeds'])}"
        lines.append(f"| {text} | {paper_cell} | {gap:+.1f} | {threshold} | {seeds} | {verdict(gap, sd_a, sd_b)} |")
    return lines


def markdown(summary, header=""):
    """The comparison as Markdown: per dataset, our rows, then the paper's THUMOS'14 rows."""
    lines = [header] if header else []
    for dataset in sorted({d for d, _ in summary}):
        runs = _ordered(r for d, r in summary if d == dataset)
        lines += [f"### {dataset}", "",
                  "| run | seeds | " + " | ".join(f"mAP@{t}" for t in THRESHOLDS)
                  + " | avg 0.1:0.5 | avg 0.1:0.7 | F1@0.5 | AEDT (s) | val avg 0.1:0.7 | paper THUMOS'14 avg 0.1:0.5 / 0.1:0.7 |",
                  "|---" * (len(THRESHOLDS) + 8) + "|"]
        for run in runs:
            s = summary[(dataset, run)]
            paper = PAPER_THUMOS.get(_base_run(run))
            if paper:
                paper_cell = f"{paper[1]} / {paper[2]}"
            elif _base_run(run) in PAPER_ABLATION_DROP:
                paper_cell = f"avg {PAPER_ABLATION_DROP[_base_run(run)]:+.1f} vs OnPoint"
            else:
                paper_cell = ""
            lines.append(f"| {run} | {len(s['seeds'])} | " + " | ".join(_cell(s[t]) for t in THRESHOLDS)
                         + f" | {_cell(s['avg_0.1_0.5'])} | {_cell(s['avg_0.1_0.7'])} | {_cell(s['f1_0.5'])}"
                         + f" | {_cell(s['aedt'], 2)} | {_cell(s['val_avg_0.1_0.7'])} | {paper_cell} |")
        teacher = [summary[(dataset, r)]["teacher_avg_0.1_0.7"][0] for r in runs]
        teacher = [t for t in teacher if t is not None]
        if teacher:
            cells = ["offline teacher (sees whole videos)", ""] + [""] * (len(THRESHOLDS) + 1) + [f"{teacher[0]:.1f}"] + [""] * 4
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"The paper's orderings on {dataset} (avg mAP 0.1:0.7; a gap holds beyond 2 sd when it exceeds "
                  "twice the larger of the two rows' sample sd over seeds):", ""] + orderings(summary, dataset)
        lines.append("")
    return "\n".join(lines)


def replace_block(text, name, content):
    """`text` with the lines between `<!-- NAME:start -->` and `<!-- NAME:end -->` replaced by
    `content` (the markers stay); None when the markers are missing or out of order."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        return None
    return text[:i + len(start)] + "\n" + content.strip("\n") + "\n" + text[j:]


def bar_chart_figure(summary):
    """Average mAP (0.1:0.7) per run and dataset, with the seed spread as error bars (a Figure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = sorted({d for d, _ in summary})
    figure = Figure(figsize=(8, 1.2 + 2.2 * max(len(datasets), 1)))
    axes_list = figure.subplots(max(len(datasets), 1), 1, squeeze=False)[:, 0]
    for axes, dataset in zip(axes_list, datasets):
        runs = _ordered(r for d, r in summary if d == dataset)
        means = [summary[(dataset, r)]["avg_0.1_0.7"][0] or 0.0 for r in runs]
        spreads = [summary[(dataset, r)]["avg_0.1_0.7"][1] or 0.0 for r in runs]
        axes.barh(range(len(runs)), means, xerr=spreads, color="tab:blue", capsize=3)
        axes.set_yticks(range(len(runs)), runs, fontsize="small")
        axes.invert_yaxis()
        axes.set_title(dataset, fontsize="medium")
        axes.set_xlabel("online mAP avg 0.1:0.7 (%)")
    figure.tight_layout()
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure, dpi=100):
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def bar_chart_png(path, summary):
    """The bar chart of `bar_chart_figure` as a PNG file, written atomically."""
    from .io import atomic_file

    with atomic_file(path, "wb") as handle:
        handle.write(png_bytes(bar_chart_figure(summary)))

"""PNG plots of the evaluation for DVC: precision-recall curves per tIoU and per-class AP bars.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend
state, no display needed) and written atomically, since DVC may read the plots at any time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..io import atomic_file


def _save_png(figure, path):
    FigureCanvasAgg(figure)
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def pr_curve_png(path, curves):
    """One precision-recall line per tIoU from `precision_recall_curves`' DataFrame (tiou, recall, precision)."""
    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    thresholds = sorted(curves["tiou"].unique()) if len(curves) else []
    for threshold in thresholds:
        part = curves[curves["tiou"] == threshold]
        axes.plot(part["recall"].to_numpy(), part["precision"].to_numpy(), label=f"tIoU {threshold:g}", linewidth=1.2)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title("online precision-recall per tIoU (test videos, classes pooled by score)", fontsize=10)
    axes.grid(alpha=0.3)
    if thresholds:
        axes.legend(loc="upper right", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    _save_png(figure, path)


def per_class_ap_png(path, per_class, tiou_key="0.5"):
    """Horizontal bars of AP (percent) per class at `tiou_key`, as in evaluate_detections' per_class."""
    labels = [str(label) for label in per_class]
    values = np.array([float(per_class[label][tiou_key]) for label in per_class])
    figure = Figure(figsize=(6, max(2.5, 0.3 * len(labels) + 1.2)))
    axes = figure.add_subplot()
    positions = np.arange(len(labels))
    axes.barh(positions, values, color="tab:blue")
    axes.set_yticks(positions, labels, fontsize="small")
    axes.invert_yaxis()                # first class on top
    axes.set_xlim(0, 100)
    axes.set_xlabel(f"AP (%) at tIoU {tiou_key}")
    axes.set_title(f"per-class AP at tIoU {tiou_key} (online, test videos)")
    if len(values):
        axes.axvline(values.mean(), color="tab:red", linestyle="--", linewidth=1, label=f"mAP {values.mean():.1f}")
        axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    _save_png(figure, path)


def stream_timeline_png(path, video_id, duration, classes, gt, proposals):
    """GT segments above, emitted proposals below (opacity = score), each proposal with a tick at
    its generation time joined to its end: how long after (or before) the action ended it came."""
    classes = list(classes)
    colours = [f"C{i % 10}" for i in range(len(classes))]
    figure = Figure(figsize=(12, 3.2))
    gt_axes, prop_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    for row in gt.itertuples():
        gt_axes.axvspan(row.start, row.end, 0.15, 0.85, color=colours[classes.index(row.label)], alpha=0.85)
    gt_axes.set_yticks([])
    gt_axes.set_ylabel("GT", rotation=0, ha="right", va="center")
    order = proposals.sort_values("gen_time")
    for lane, row in enumerate(order.itertuples()):
        y = (lane % 12) / 12.0 + 0.04
        colour = colours[classes.index(row.label)]
        prop_axes.plot([row.start, row.end], [y, y], color=colour, linewidth=4,
                       alpha=float(np.clip(0.25 + row.score, 0.25, 1.0)), solid_capstyle="butt")
        prop_axes.plot([row.end, row.gen_time], [y, y], color=colour, linewidth=0.8, linestyle=":")
        prop_axes.plot([row.gen_time], [y], marker="|", color="k", markersize=6)
    prop_axes.set_ylim(0, 1.05)
    prop_axes.set_yticks([])
    prop_axes.set_ylabel(f"emitted\n({len(order)})", rotation=0, ha="right", va="center")
    prop_axes.set_xlim(0, duration)
    prop_axes.set_xlabel("seconds (| = generation time)")
    shown = sorted(set(gt.label) | set(proposals.label), key=classes.index)
    if shown:      # which colour is which class
        handles = [Patch(color=colours[classes.index(name)], label=name) for name in shown]
        gt_axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False,
                       title="class", title_fontsize=7)
    figure.suptitle(f"{video_id}: ground truth vs online proposals", fontsize=10)
    figure.tight_layout()
    _save_png(figure, path)

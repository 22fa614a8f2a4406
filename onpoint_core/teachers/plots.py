"""Timeline pictures of what the teacher makes of a video: GT, points, CAS, pseudo segments.

Drawn with matplotlib's object API on the Agg canvas: no pyplot, no global backend choice at import.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_file


def _bars(ax, table, classes, colours, label):
    for row in table.itertuples():
        ax.axvspan(row.start, row.end, ymin=0.15, ymax=0.85, color=colours[classes.index(row.label)], alpha=0.8)
    ax.set_yticks([])
    ax.set_ylabel(label, rotation=0, ha="right", va="center")


def timeline_png(path, video_id, duration, classes, gt, points, cas, pseudo):
    """One PNG: GT segments, points, the teacher's CAS (classes in the video + background), pseudo segments."""
    colours = colormaps["tab20"](np.linspace(0, 1, max(len(classes), 2)))
    fig = Figure(figsize=(12, 5.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [1, 0.6, 3, 1]})
    _bars(axes[0], gt, classes, colours, "GT")
    for row in points.itertuples():
        axes[1].axvline(row.time, color=colours[classes.index(row.label)], lw=2)
    axes[1].set_yticks([])
    axes[1].set_ylabel("points", rotation=0, ha="right", va="center")
    times = (np.arange(len(cas)) + 0.5) * duration / len(cas)
    shown = sorted(set(gt.label) | set(points.label) | set(pseudo.label))
    for name in shown:
        axes[2].plot(times, cas[:, classes.index(name)], color=colours[classes.index(name)], lw=1, label=name)
    axes[2].plot(times, cas[:, -1], color="0.5", lw=1, ls="--", label="background")
    axes[2].set_ylim(0, 1)
    axes[2].set_ylabel("CAS", rotation=0, ha="right", va="center")
    axes[2].legend(loc="upper right", fontsize=7, ncol=min(len(shown) + 1, 6))
    _bars(axes[3], pseudo, classes, colours, "pseudo")
    axes[3].set_xlabel("seconds")
    axes[3].set_xlim(0, duration)
    fig.suptitle(video_id, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())

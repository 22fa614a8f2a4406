"""Live training curves with dvclive: one TSV per loss term, updated after every step of training.

Why dvclive: the stage's CSV curves are written when the stage ends, so nothing shows while a
teacher or the student trains. dvclive appends each logged value to live/<stage>/plots/metrics/
<term>.tsv as it comes, and `dvc plots show` (or DVC Studio during `dvc exp run`) draws the curves
of a run in progress; the titled plots are declared in dvc.yaml. The stage metrics JSON stay the
scientific results; dvclive's own metrics.json is the last logged row, not a DVC metric.

Resume: the trainers call the hook after they save their resume file, so a resumed run's first
row is the step after the last saved one. On that first row the files are cut back to the steps
before it (dropping rows logged after the last save, which the resumed run repeats) and dvclive
continues at that step (`resume=True`). Values only, no timestamps: the files are outputs of the
stage, and a rerun with the same inputs rebuilds them byte for byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

LIVE_DIR = "live"


def _cut(folder, first_step):
    """Keep only the rows with step < first_step in every TSV of a dvclive folder."""
    for tsv in (Path(folder) / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        kept = lines[:1] + [line for line in lines[1:] if int(line.split("\t", 1)[0]) < first_step]
        tsv.write_text("\n".join(kept) + "\n")
    summary = Path(folder) / "metrics.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        data["step"] = first_step - 1
        summary.write_text(json.dumps(data, indent=4) + "\n")


class LiveCurves:
    """A training hook: `row(dict)` logs the row's loss terms (and extras) as one dvclive step.

    `step_key` names the row's 1-based counter (epoch or iteration); `terms` maps row keys to the
    names plotted, or is None for every numeric key of the row (`loss` as `total`, `loss_x` as `x`:
    the teachers' terms differ). None values (terms a run switches off) are not logged."""

    def __init__(self, stage, step_key, terms=None, folder=None):
        self.folder = str(folder or Path(LIVE_DIR) / stage)
        self.step_key, self.terms = step_key, None if terms is None else dict(terms)
        self.live = None

    def _names(self, row):
        if self.terms is not None:
            return self.terms
        return {key: "total" if key == "loss" else key.removeprefix("loss_") for key, value in row.items()
                if key != self.step_key and isinstance(value, (int, float)) and not isinstance(value, bool)}

    def _start(self, step):
        from dvclive import Live

        resume = step > 0 and Path(self.folder).is_dir()
        if resume:
            _cut(self.folder, step)
        self.live = Live(dir=self.folder, resume=resume, report=None, save_dvc_exp=False, dvcyaml=None)
        if not resume and step > 0:          # resumed, but the curves were lost: start numbering here
            self.live.step = step

    def row(self, row):
        step = int(row[self.step_key]) - 1
        if self.live is None:
            self._start(step)
        for key, name in self._names(row).items():
            value = row.get(key)
            if value is not None and math.isfinite(float(value)):
                self.live.log_metric(name, float(value))
        self.live.next_step()

    def end(self):
        if self.live is not None:
            self.live.end()

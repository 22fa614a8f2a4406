"""Live training curves (dvclive): appended while training, identical after a crash and resume."""

from __future__ import annotations

import pytest

from onpoint_core.live import LiveCurves
from onpoint_core.teachers.hrpro import HRProTeacher
from tests.test_hrpro import C, D, _Crash, base_cfg, make_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tsv_files(folder):
    return {p.name: p.read_text() for p in sorted((folder / "plots" / "metrics").glob("*.tsv"))}


def test_a_resumed_fit_writes_the_live_curves_of_an_uninterrupted_one(tmp_path):
    """HR-Pro crashes at iteration 5, after its resume file saved iteration 4 and after the live
    hook logged 5: the resumed fit redoes 5, and the curves must not show it twice."""
    data = [v for v, _ in make_set(6, 3)]
    cfg = base_cfg(iterations=7, videos_per_iteration=2, max_train_steps=90)
    whole = LiveCurves("t", "iteration", folder=tmp_path / "whole")
    HRProTeacher(C, D, cfg).fit(data, log=whole.row, progress=False)
    whole.end()

    curves = LiveCurves("t", "iteration", folder=tmp_path / "resumed")

    def log_then_crash(row):
        curves.row(row)
        if row["iteration"] == 5:
            raise _Crash(5)

    path = tmp_path / "resume.pt"
    with pytest.raises(_Crash):
        HRProTeacher(C, D, cfg).fit(data, log=log_then_crash, progress=False, checkpoint=path, checkpoint_every=2)
    assert tsv_files(tmp_path / "resumed")["total.tsv"].count("\n") == 1 + 5      # iterations 1..5 so far
    again = LiveCurves("t", "iteration", folder=tmp_path / "resumed")
    HRProTeacher(C, D, cfg).fit(data, log=again.row, progress=False, checkpoint=path, checkpoint_every=2)
    again.end()
    expected = tsv_files(tmp_path / "whole")
    assert set(expected) == {"total.tsv", "point.tsv", "background.tsv", "contrast.tsv"}
    assert tsv_files(tmp_path / "resumed") == expected
    assert expected["total.tsv"].splitlines()[0] == "step\ttotal" and expected["total.tsv"].count("\n") == 1 + 7


def test_terms_a_run_switches_off_get_no_file_and_a_fresh_run_starts_clean(tmp_path):
    folder = tmp_path / "s"
    first = LiveCurves("s", "epoch", {"loss": "total", "cass": "L_cass"}, folder=folder)
    for epoch in (1, 2):
        first.row({"epoch": epoch, "loss": 1.0 / epoch, "cass": 0.5})
    first.end()
    second = LiveCurves("s", "epoch", {"loss": "total", "cass": "L_cass"}, folder=folder)
    second.row({"epoch": 1, "loss": 3.0, "cass": None})        # e.g. teacher_oat: no CASS
    second.end()
    assert tsv_files(folder) == {"total.tsv": "step\ttotal\n0\t3.0\n"}

"""The runs of the paper's comparison (docs/method.md 7) as switches of one student, not code forks.

`student.run` in params.yaml names one row; `dvc exp run -S student.run=distillation_free` trains
that row. Only `fully_supervised` reads ground-truth segments of training videos, and it is a
reference, not a POTAL method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import RUN_NAMES


@dataclass(frozen=True)
class Variant:
    instance_targets: str | None   # "pseudo" (teacher pseudo segments), "gt", or None (no L_ins)
    cass: bool                     # L_cass on the teacher CAS
    anticipation: bool             # L_ant on the teacher's future class probabilities
    points: bool                   # L_pnt on the point labels
    calibration: bool              # actionness-calibrated cross-attention
    inference: str                 # "instance" heads or "point" heads decode proposals

    def as_dict(self):
        return asdict(self)

    @property
    def reads_ground_truth(self):
        return self.instance_targets == "gt"

    @property
    def needs_teacher(self):
        return self.instance_targets == "pseudo" or self.cass or self.anticipation


_ONPOINT = dict(instance_targets="pseudo", cass=True, anticipation=True, points=True, calibration=True,
                inference="instance")

RUNS = {
    "onpoint": Variant(**_ONPOINT),
    "teacher_oat": Variant(instance_targets="pseudo", cass=False, anticipation=False, points=False,
                           calibration=False, inference="instance"),
    "distillation_free": Variant(instance_targets=None, cass=False, anticipation=False, points=True,
                                 calibration=False, inference="point"),
    "fully_supervised": Variant(instance_targets="gt", cass=False, anticipation=False, points=False,
                                calibration=False, inference="instance"),
    # no CASS, so nothing supervises what calibration would read: no calibration either (docs/method.md 7)
    "no_cass_anticipation": Variant(**{**_ONPOINT, "cass": False, "anticipation": False, "calibration": False}),
    "no_calibration": Variant(**{**_ONPOINT, "calibration": False}),
    "no_point_supervision": Variant(**{**_ONPOINT, "points": False}),
}


assert tuple(RUNS) == RUN_NAMES, "config.RUN_NAMES must list the runs defined here"


def variant(name, source="params.yaml"):
    from ..errors import OnPointError

    if name not in RUNS:
        raise OnPointError(f"{source}: student.run: unknown run {name!r}; choose one of {', '.join(RUNS)}")
    return RUNS[name]

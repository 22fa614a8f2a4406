"""What every stage script does around its work: read its params, log them, keep run facts apart.

Metrics files (metrics/*.json, DVC metrics, tracked by git) hold scientific results only, so
`dvc exp show` compares results and a rerun with the same inputs leaves them byte-identical.
Timings, devices, counts and strings go to logs/<stage>.json, and what the stage prints to
logs/<stage>.log: neither is a DVC metric or in git.
"""

from __future__ import annotations

import sys

from .config import load_stage
from .io import write_json
from .progress import stage_log

LOGS = "logs"


def start(stage, params_path="params.yaml", logs_dir=LOGS, append_log=False):
    """The stage's params (config.StageParams), after printing them as YAML to stderr; from here
    on what the stage prints is also kept in logs/<stage>.log (progress.stage_log; `append_log`
    for a worker that adds to its launcher's log)."""
    stage_log(stage, logs_dir, append=append_log)
    params = load_stage(stage, params_path)
    print(params.as_yaml(), file=sys.stderr, flush=True)
    return params


def write_terms_csv(path, frame, x, terms):
    """Loss curves in long form (x, term, value), one row per step and term, for the `by_term`
    plot template (.dvc/plots/by_term.json): each term gets its own colour, which DVC's templates
    give only to revisions. `terms` maps column -> name shown; empty columns (terms a run switches
    off) are left out."""
    import pandas as pd

    from .io import atomic_file

    parts = [pd.DataFrame({x: frame[x].to_numpy(), "term": name, "value": frame[column].to_numpy()})
             for column, name in terms.items() if column in frame and frame[column].notna().any()]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[x, "term", "value"])
    with atomic_file(path) as handle:
        table.to_csv(handle, index=False)


def write_run_log(stage, facts, logs_dir=LOGS):
    """Run facts (timings, devices, counts) of one stage run, outside DVC's metrics and git."""
    write_json(f"{logs_dir}/{stage}.json", facts)


"""The `onpoint` console command: importers, the synthetic generator, streaming, evaluation, the comparison report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import friendly_errors


@click.group()
@click.version_option(package_name="onpoint")
def main():
    """OnPoint: point-supervised online temporal action localization.

    The pipeline itself runs with `dvc repro`; these commands bring data in and score predictions.
    """


@main.command("import")
@click.argument("layout", type=click.Choice(["hrpro", "oat", "hat"]))
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--features-for", type=click.Choice(["both", "teacher", "student"]), default="both", show_default=True,
              help="Which model reads these features. THUMOS'14: import hrpro with 'teacher' and oat with 'student' "
                   "into the same OUT; the two imports are merged.")
@click.option("--split", type=int, default=1, show_default=True, help="hat layout: which annotation split file to read.")
@click.option("--features-dir", type=click.Path(exists=True, file_okay=False),
              help="hat layout: folder of per-video .npz/.npy features (default ROOT/I3D).")
@click.option("--train-pickle", type=click.Path(exists=True, dir_okay=False),
              help="oat layout: the training-split pickle (default ROOT/thumos_all_feature_val_V3.pickle).")
@click.option("--test-pickle", type=click.Path(exists=True, dir_okay=False),
              help="oat layout: the test-split pickle (default ROOT/thumos_all_feature_test_V3.pickle).")
@click.option("--step-rate", default=None,
              help="Feature steps per second used to check lengths (default per layout: hrpro 1.5625, oat 4, "
                   "hat 2), or 'auto' for the median over all videos.")
@click.option("--duration-tolerance", type=float, default=0.05, show_default=True,
              help="Allowed relative disagreement of a feature file's length with duration x step rate.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of training videos held out as the validation subset (model selection; never test).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the validation split.")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False),
              help="The annotation JSON instead of the layout's default name (gt_full.json, thumos14_v2.json, "
                   "egtea_annotations_split<N>.json).")
@click.option("--subset-map", "subset_map", multiple=True, metavar="NAME=SUBSET",
              help="Read the file's subset NAME as train, val or test (repeatable), e.g. Validation=train for "
                   "an ActionFormer-style THUMOS file in the hat layout. Split files, where present, decide.")
@friendly_errors
def import_command(layout, root, out, features_for, split, features_dir, train_pickle, test_pickle, step_rate,
                   duration_tolerance, val_fraction, seed, annotations, subset_map):
    """Import a public dataset LAYOUT under ROOT into the canonical dataset folder OUT.

    \b
    hrpro  THUMOS'14 as in HR-Pro: features/{train,test}/<video>.npy, gt_full.json,
           point_labels/point_gaussian.csv (LACP points), split_train.txt, split_test.txt,
           Ambiguous_test.txt
    oat    THUMOS'14 as in OAT: thumos14_v2.json and one pickle of features per split.
           A pickle can run code when loaded: only the two pickle files named above (or
           given with --train-pickle/--test-pickle) are read; import only pickles you trust.
    hat    EGTEA as in HAT: egtea_annotations_split<N>.json and I3D/<video>.npz (rgb, flow);
           also any dataset in the same `database` JSON layout (HOI4D-O, ...).

    OUT is written atomically: on any error it is left as it was; what a killed import left
    beside it is removed (and a moved-aside OUT put back) by the next import of OUT. An import
    without training or without test videos is an error: map subset names with --subset-map.
    """
    from .data.importers import import_layout

    options = {"hat": {"split": split, "features_dir": features_dir},
               "oat": {"train_pickle": train_pickle, "test_pickle": test_pickle}}.get(layout, {})
    options = {k: v for k, v in options.items() if v is not None}
    if step_rate is not None:
        try:
            options["step_rate"] = step_rate if step_rate == "auto" else float(step_rate)
        except ValueError:
            raise click.BadParameter(f"not a number or 'auto': {step_rate!r}", param_hint="--step-rate") from None
    summary = import_layout(layout, root, out, features_for=features_for, val_fraction=val_fraction, seed=seed,
                            duration_tolerance=duration_tolerance, annotations=annotations,
                            subset_map=_subset_map(subset_map), **options)
    click.echo(json.dumps(summary, indent=2, default=str))


def _subset_map(pairs):
    """--subset-map NAME=SUBSET options as a dict (the importer checks the subset names)."""
    mapping = {}
    for pair in pairs:
        name, sep, subset = pair.partition("=")
        if not sep or not name.strip() or not subset.strip():
            raise click.BadParameter(f"expected NAME=train|val|test, got {pair!r}", param_hint="--subset-map")
        mapping[name.strip()] = subset.strip().lower()
    return mapping


@main.command("synth")
@click.argument("annotations", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--points", "points_csv", type=click.Path(exists=True, dir_okay=False),
              help="LACP points CSV (HR-Pro's point_gaussian.csv) to ship with the dataset.")
@click.option("--profile", type=click.Choice(["sparse", "dense"]), default="sparse", show_default=True,
              help="The feature knobs: the `generator` of the first synthetic dataset entry of this profile.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Share of the file's training videos carved out as `val` (default: the profile generator's).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@friendly_errors
def synth_command(annotations, out, points_csv, profile, val_fraction, params_path):
    """Synthesize features along the real segments of an ANNOTATIONS file into OUT.

    The annotation-driven mode of the synthetic benchmark: THUMOS'14 or EGTEA timing, synthetic
    evidence. Write OUT under data/imported/ and point a dataset entry's `source` at it, e.g.
    `onpoint synth gt_full.json data/imported/thumos14_synth --points point_gaussian.csv`, then
    `dvc exp run -S dataset=thumos14 -S datasets.thumos14.source=data/imported/thumos14_synth`.
    """
    from .config import generator_for_profile, read_params_file
    from .data.synthetic import synthesize_from_annotations

    syn = generator_for_profile(read_params_file(params_path), profile, params_path).as_dict()
    if val_fraction is not None:   # a real annotation file has its own size: 200 THUMOS training videos need less than 80
        syn["val_fraction"] = val_fraction
    summary = synthesize_from_annotations(annotations, syn, out, points_csv=points_csv)
    click.echo(json.dumps(summary, indent=2))


@main.command("evaluate")
@click.option("--gt", "gt_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Ground-truth segments: Parquet/CSV/JSON lines with video_id, label, start, end (seconds), "
                   "or ActivityNet JSON {\"database\": ...}.")
@click.option("--pred", "pred_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Proposals: Parquet/CSV/JSON lines with video_id, label, start, end, score[, gen_time], "
                   "or ActivityNet JSON {\"results\": ...}.")
@click.option("--tiou", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7", show_default=True, help="Comma-separated tIoU thresholds.")
@click.option("--videos", "videos_path", type=click.Path(exists=True, dir_okay=False),
              help="Optional videos.parquet: evaluate only its videos of --subset.")
@click.option("--subset", default="test", show_default=True,
              help="Which videos: those of this subset in --videos, or (without --videos) in an ActivityNet "
                   "ground-truth file (case-insensitive).")
@click.option("--ambiguous", "ambiguous_path", type=click.Path(exists=True, dir_okay=False),
              help="Optional ambiguous segments (THUMOS'14): video_id, start, end.")
@click.option("--classes", "classes_path", type=click.Path(exists=True, dir_okay=False),
              help="Optional classes.json of the dataset folder: every GT and prediction label must be in it. "
                   "Without it, at least one prediction label must occur in the GT.")
@friendly_errors
def evaluate_command(gt_path, pred_path, tiou, videos_path, subset, ambiguous_path, classes_path):
    """Score proposals against ground truth: mAP per tIoU, F1@0.5, AEDT. Prints JSON to stdout."""
    import pandas as pd

    from .errors import OnPointError
    from .evaluation.activitynet import is_activitynet, read_table, subset_videos
    from .evaluation.detection import check_labels, coverage_warnings, evaluate_detections, load_class_list

    try:
        thresholds = [float(x) for x in tiou.split(",") if x.strip()]
    except ValueError:
        raise OnPointError(f"--tiou: not a comma-separated list of numbers: {tiou!r}") from None
    if not thresholds or not all(0 < t <= 1 for t in thresholds):
        raise OnPointError(f"--tiou: thresholds must lie in (0, 1], got {tiou!r}")
    gt = read_table(gt_path, "segments", subset=None if videos_path else subset)
    pred = read_table(pred_path, "proposals")
    classes = load_class_list(classes_path) if classes_path else None
    check_labels(gt, pred, classes, gt_source=gt_path, pred_source=pred_path, classes_source=classes_path)
    videos = None
    if videos_path:
        try:
            table = pd.read_parquet(videos_path, columns=["video_id", "subset"])
        except Exception as exc:  # pyarrow raises several types for a bad or foreign file
            raise OnPointError(f"{videos_path}: not a videos.parquet with video_id and subset "
                               f"({exc.__class__.__name__})") from None
        videos = table.loc[table.subset == subset, "video_id"].tolist()
        if not videos:
            raise OnPointError(f"{videos_path}: no video of subset {subset!r} (it has {sorted(set(table.subset))})")
    elif is_activitynet(gt_path):
        videos = subset_videos(gt_path, subset)      # read_table has checked that there are some
    ambiguous = read_table(ambiguous_path, "ambiguous") if ambiguous_path else None
    result = evaluate_detections(gt, pred, thresholds, ambiguous=ambiguous, videos=videos, gt_source=gt_path)
    for warning in coverage_warnings(gt, pred, videos, gt_source=gt_path, pred_source=pred_path):
        click.echo(f"Warning: {warning}", err=True)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


@main.command("convert")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(["segments", "proposals"]),
              help="What SRC holds; default: told by an ActivityNet file's layout, else proposals when the "
                   "table has a score column.")
@click.option("--videos", "videos_path", type=click.Path(exists=True, dir_okay=False),
              help="videos.parquet (video_id, subset, duration): subset and duration of each video when writing "
                   "ground truth as ActivityNet JSON, and the videos listed (also with no detection) in results.")
@click.option("--subset", help="ActivityNet ground truth in: keep only this subset's videos.")
@friendly_errors
def convert_command(src, dst, kind, videos_path, subset):
    """Convert a table between Parquet / CSV / JSON lines and ActivityNet JSON (chosen by DST's suffix:
    .json writes ActivityNet's layout, .parquet/.csv/.tsv a flat table)."""
    import pandas as pd

    from .errors import OnPointError
    from .evaluation.activitynet import database_json, is_activitynet, read_table, results_json
    from .io import atomic_file, write_parquet

    if kind is None:
        if is_activitynet(src):
            kind = "segments" if "database" in json.loads(Path(src).read_text()) else "proposals"
        else:
            kind = "proposals" if "score" in read_table(src, "segments").columns else "segments"
    table = read_table(src, kind, subset=subset)
    videos = None
    if videos_path:
        try:
            videos = pd.read_parquet(videos_path, columns=["video_id", "subset", "duration"])
        except Exception as exc:  # pyarrow raises several types for a bad or foreign file
            raise OnPointError(f"{videos_path}: not a videos.parquet with video_id, subset and duration "
                               f"({exc.__class__.__name__})") from None
    suffix = Path(dst).suffix.lower()
    if suffix == ".json":
        if kind == "segments":
            if videos is None:
                raise OnPointError(f"{dst}: ActivityNet ground truth needs each video's subset and duration: "
                                   "give --videos videos.parquet")
            payload = database_json(table, videos)
        else:
            payload = results_json(table, videos=None if videos is None else videos.video_id.tolist())
        with atomic_file(dst) as handle:
            json.dump(payload, handle, indent=1)
            handle.write("\n")
    elif suffix in (".parquet", ".pq"):
        write_parquet(dst, table)
    elif suffix in (".csv", ".tsv"):
        with atomic_file(dst) as handle:
            table.to_csv(handle, index=False, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise OnPointError(f"{dst}: unsupported output type {suffix!r} (use .json, .parquet, .csv or .tsv)")
    click.echo(f"{len(table)} {kind} rows: {src} -> {dst}", err=True)


@main.command("export")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="Student checkpoint (models/student.pt).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="TorchScript file to write (e.g. student.ts); the checkpoint's meta travels inside it.")
@friendly_errors
def export_command(model_path, out_path):
    """Export the student's window network (inference heads) as TorchScript.

    Load it with `torch.jit.load` (windows B x W x feature_dim in, a dict of raw outputs out), or
    with `onpoint_core.student.export.load_exported` to stream it through the StreamingEngine."""
    from .student.export import export_student

    meta = export_student(model_path, out_path)
    click.echo(f"{model_path} -> {out_path} (TorchScript; window {meta['config']['window']}, "
               f"{len(meta['classes'])} classes, {meta['variant'].get('inference', 'instance')} heads)", err=True)


@main.command("card")
@click.argument("model_path", type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", type=click.Path(exists=True, dir_okay=False),
              help="Test metrics of the run that trained it (its metrics/online_eval.json) to include.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write the card here (default: stdout).")
@friendly_errors
def card_command(model_path, metrics_path, out_path):
    """A model card (Markdown) for a student checkpoint: model, data, params, results, use, limits."""
    from .io import atomic_file
    from .student.card import model_card

    text = model_card(model_path, metrics_path)
    if out_path:
        with atomic_file(out_path) as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)


@main.command("report")
@click.option("--repo", default=".", show_default=True, type=click.Path(exists=True, file_okay=False),
              help="The DVC project whose experiments to compare.")
@click.option("--out", default="reports/comparison.md", show_default=True, help="Markdown table.")
@click.option("--png", default="reports/comparison.png", show_default=True, help="Bar chart of average mAP per run.")
@click.option("--all-commits", is_flag=True, help="Experiments of every commit, not only of the current one.")
@click.option("--dataset", "datasets", multiple=True,
              help="Only experiments on this params.yaml dataset entry (repeatable); default: all.")
@click.option("--exclude", "excluded", multiple=True, metavar="GLOB",
              help="Leave out experiments whose name matches this shell pattern (repeatable), e.g. 'probe-*'.")
@click.option("--readme", type=click.Path(exists=True, dir_okay=False),
              help="Also write the table into this file, between <!-- BLOCK:start --> and <!-- BLOCK:end -->.")
@click.option("--block", default="comparison", show_default=True, help="Marker name for --readme.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write one self-contained HTML page (images inline, no CDN): the table, the bar chart, each "
                   "row's PR curve and the workspace run's plots.")
@friendly_errors
def report_command(repo, out, png, all_commits, datasets, excluded, readme, block, html_path):
    """Compare the DVC experiments (dvc exp show --json): Markdown table + bar chart, seeds averaged."""
    import fnmatch
    import subprocess

    from .errors import OnPointError
    from .report import (
        bar_chart_png,
        experiment_rows,
        markdown,
        read_experiments,
        replace_block,
        summarise,
    )
    from .io import atomic_file

    rows = experiment_rows(read_experiments(repo, all_commits=all_commits))
    if datasets:
        rows = [row for row in rows if row["dataset"] in datasets]
    rows = [row for row in rows if not any(fnmatch.fnmatchcase(str(row["experiment"]), g) for g in excluded)]
    if not rows:
        wanted = f" on {', '.join(datasets)}" if datasets else ""
        raise OnPointError(f"{repo}: no experiment{wanted} has metrics/online_eval.json yet (run dvc repro or dvc exp run)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    bases = sorted({row["baseline"] for row in rows if row.get("baseline") not in (None, "None", "workspace")})
    if all_commits and len(bases) > 1:      # experiments of several commits: name each, with its count
        counts = ", ".join(f"{b[:7]} ({sum(r['baseline'] == b for r in rows)})" for b in bases)
        where = f"at commits {counts}; {len(rows)} experiments, each params.yaml of its commit"
    else:
        # one baseline: the commit the experiments ran from, which with --all-commits need not be HEAD
        commit = bases[0][:7] if len(bases) == 1 else commit
        where = f"at commit {commit or 'unknown'}; {len(rows)} experiments, each params.yaml of that commit"
    header = (f"Produced by `onpoint report` from `dvc exp show` {where} with `dataset`, `student.run` and "
              f"`student.seed` set (`dvc exp show` lists all their params). Mean ± sample standard deviation "
              f"over seeds. `val avg 0.1:0.7` is the val videos' score of the kept epoch (the convergence rule selects on it; "
              f"the other columns are the test split). The paper column is THUMOS'14 (docs/method.md 7), printed for "
              f"orientation only.\n")
    summary = summarise(rows)
    table = markdown(summary, header)
    if readme:
        updated = replace_block(Path(readme).read_text(), block, table)
        if updated is None:
            raise OnPointError(f"{readme}: no <!-- {block}:start --> ... <!-- {block}:end --> markers to write the table between")
    with atomic_file(out) as handle:
        handle.write(table + "\n")
    bar_chart_png(png, summary)
    if readme:
        with atomic_file(readme) as handle:
            handle.write(updated)
    if html_path:
        from .html_report import html_page

        with atomic_file(html_path) as handle:
            handle.write(html_page(summary, rows, header, repo=repo, commit=commit))
    click.echo(f"{len(rows)} experiments, {len(summary)} (dataset, run) rows -> {out}, {png}"
               + (f", {html_path}" if html_path else ""))


@main.command("params")
@click.option("--stage", "stages", multiple=True, help="Only this stage (repeatable); default: every stage.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@friendly_errors
def params_command(stages, params_path):
    """Print, as YAML, the resolved parameters each pipeline stage reads (what dvc.yaml tracks).

    The whole file is validated first: a wrong key anywhere is reported, naming the key.
    """
    from .config import STAGES, describe, read_params_file, resolve_params

    for stage in stages:
        if stage not in STAGES:
            raise click.BadParameter(f"unknown stage {stage!r} (known: {', '.join(STAGES)})", param_hint="--stage")
    raw = read_params_file(params_path)
    resolve_params(raw, params_path)
    click.echo(describe(raw, stages or STAGES), nl=False)


def _register_streaming():
    from .online.predict_cli import predict_command
    from .online.stream_cli import stream_command

    main.add_command(stream_command, "stream")
    main.add_command(predict_command, "predict")


_register_streaming()

if __name__ == "__main__":
    main()

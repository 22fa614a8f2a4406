"""Student training on tiny real data: what each run reads, that every run trains, resume after an
interruption, checkpoints written by the stage's glue, and data-parallel training on 2 CPU processes.

The data is a real canonical dataset folder (the synthetic generator, a handful of short videos),
the points stage's Gaussian points, and a stand-in for the teacher's outputs written in the
teacher_cache / pseudo_segments formats: a CAS per video on a coarser step grid than the student's
(as I3D vs TSN on THUMOS) and pseudo segments jittered from the ground truth with one miss and one
false alarm. They are made once, before any test touches the ground truth, exactly as the real
teacher stages would have made them.
"""

import dataclasses
import datetime
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from onpoint_core.config import StageParams, load_stage
from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import generate_synthetic
from onpoint_core.errors import OnPointError
from onpoint_core.points.labels import training_points
from onpoint_core.student import runner
from onpoint_core.student.checkpoint import load_student
from onpoint_core.student.training import train_student
from onpoint_core.student.variants import RUNS
from onpoint_core.student.windows import WindowData
from tests.conftest import REPO_ROOT, tiny_synthetic

CPU = torch.device("cpu")
TERMS = ("ins", "cass", "ant", "pnt")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine their spin-waits
    make training many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fake_teacher(dataset, root):
    """A teacher cache (cas/<id>.npy, T_teacher x (C+1) softmax rows; class_prob/<id>.npy, their
    action columns) and a pseudo-segment table."""
    rng = np.random.default_rng(7)
    (root / "teacher" / "cas").mkdir(parents=True)
    (root / "teacher" / "class_prob").mkdir(parents=True)
    pseudo = []
    for index, video_id in enumerate(dataset.video_ids()):
        video = dataset.video(video_id)
        duration, teacher_steps = video["duration"], round(video["n_steps"] * 0.4) + 1
        centres = (np.arange(teacher_steps) + 0.5) / teacher_steps * duration
        logits = rng.normal(0, 0.5, (teacher_steps, dataset.num_classes + 1))
        logits[:, -1] += 1.5
        for row in dataset.segments_of(video_id).itertuples():
            logits[(centres >= row.start) & (centres < row.end), dataset.classes.index(row.label)] += 4.0
            if index != 1:                     # video 1: the teacher misses everything
                start = max(0.0, row.start + rng.uniform(-0.5, 0.5))
                end = min(duration, max(start + 0.25, row.end + rng.uniform(-0.5, 0.5)))
                pseudo.append((video_id, row.label, start, end, float(rng.uniform(0.3, 0.9))))
        pseudo.append((video_id, dataset.classes[index % dataset.num_classes], 1.0, 2.5, 0.2))   # false alarm
        cas = np.exp(logits - logits.max(1, keepdims=True))
        cas = (cas / cas.sum(1, keepdims=True)).astype(np.float32)
        np.save(root / "teacher" / "cas" / f"{video_id}.npy", cas)
        np.save(root / "teacher" / "class_prob" / f"{video_id}.npy", np.ascontiguousarray(cas[:, :-1]))
    pd.DataFrame(pseudo, columns=["video_id", "label", "start", "end", "score"]).to_parquet(root / "pseudo.parquet")


def _dense_points(dataset, path):
    """A point at every step centre with a random class: every anchor then holds a point, so the
    point loss is a plain mean over (window, anchor) pairs and splits evenly across DDP ranks."""
    rng = np.random.default_rng(11)
    rows = []
    for video_id in dataset.video_ids("train", "val"):
        video = dataset.video(video_id)
        times = (np.arange(video["n_steps"]) + 0.5) * video["duration"] / video["n_steps"]
        labels = np.array(dataset.classes)[rng.integers(0, dataset.num_classes, len(times))]
        rows.append(pd.DataFrame({"video_id": video_id, "label": labels, "time": times}))
    pd.concat(rows, ignore_index=True).to_parquet(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("student_world")
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    syn = tiny_synthetic(raw, num_train_videos=6, num_test_videos=1, video_seconds=[20, 30], stream_dim=16,
                         num_classes=4, confusable_pairs=1)
    generate_synthetic(syn, root / "dataset", progress=False)
    dataset = load_dataset(root / "dataset")
    training_points(dataset, "gaussian", seed=0, sigma_fraction=1 / 6).to_parquet(root / "points.parquet")
    _fake_teacher(dataset, root)
    _dense_points(dataset, root / "dense_points.parquet")
    paths = {"points": str(root / "points.parquet"), "pseudo": str(root / "pseudo.parquet"),
             "teacher_cache": str(root / "teacher"), "resume": None}
    return {"root": root, "dataset": dataset, "paths": paths}


def tiny_cfg(run, train_stride=2, **student):
    """What the student_train stage reads from params.yaml (synthetic, cpu recipe), the student
    shrunk to a few thousand weights."""
    base = load_stage("student_train", REPO_ROOT / "params.yaml")
    data = base.data.replace(window=16, anchors=(2, 4, 8, 16), num_anchors=4, anticipation=4, train_stride=train_stride)
    settings = base.student.replace(run=run, d_model=32, ffn_dim=64, encoder_layers=1, encoder_heads=4,
                                    decoder_layers=2, decoder_heads=4, epochs=2, batch_size=16, processes=1)
    return StageParams(base.stage, {**base.objects, "data": data, "student": settings.replace(**student)}, base.view)


def _switched_on(variant):
    return {"ins": variant.instance_targets is not None, "cass": variant.cass, "ant": variant.anticipation,
            "pnt": variant.points}


# ----------------------------------------------------------------------------- integrity

def _scrambled_ground_truth(dataset):
    """Every train/val GT segment gets another class and new random times inside its video."""
    rng = np.random.default_rng(5)
    segments = dataset.segments.copy()
    training = segments.video_id.isin(dataset.video_ids("train", "val")).to_numpy()
    assert training.sum() >= 5
    index = segments.label[training].map(dataset.classes.index).to_numpy()
    segments.loc[training, "label"] = [dataset.classes[(i + 1) % dataset.num_classes] for i in index]
    durations = segments.video_id[training].map(lambda v: dataset.video(v)["duration"]).to_numpy()
    starts = rng.uniform(0, durations - 3.0)
    segments.loc[training, "start"] = starts
    segments.loc[training, "end"] = starts + rng.uniform(0.5, 3.0, len(starts))
    return dataclasses.replace(dataset, segments=segments)


def test_only_the_fully_supervised_reference_reads_training_ground_truth(world):
    dataset, paths = world["dataset"], world["paths"]
    scrambled = _scrambled_ground_truth(dataset)
    assert not scrambled.segments.equals(dataset.segments)
    for run in RUNS:
        cfg = tiny_cfg(run)
        variant, before = runner.gather_inputs(cfg, dataset, paths)
        _, after = runner.gather_inputs(cfg, scrambled, paths)
        assert [v.video_id for v in before] == dataset.video_ids("train")
        changed = runner.inputs_fingerprint(before) != runner.inputs_fingerprint(after)
        assert changed == (run == "fully_supervised"), run
        assert changed == variant.reads_ground_truth, run


# ----------------------------------------------------------------------------- every run trains

def _paths_for(world, variant):
    """Inputs a run must not need point at files that do not exist: reading one would fail."""
    missing = str(world["root"] / "does-not-exist")
    paths = dict(world["paths"])
    if not variant.points:
        paths["points"] = missing + ".parquet"
    if variant.instance_targets != "pseudo":
        paths["pseudo"] = missing + ".parquet"
    if not (variant.cass or variant.anticipation):
        paths["teacher_cache"] = missing
    return paths


@pytest.mark.parametrize("run", list(RUNS))
def test_every_run_trains_and_reports_only_its_loss_terms(world, run):
    variant = RUNS[run]
    cfg = tiny_cfg(run)
    model, got_variant, history, summary = runner.train(cfg, world["dataset"], _paths_for(world, variant),
                                                        device=CPU, progress=False)
    on = _switched_on(variant)
    assert got_variant == variant and summary["variant"] == variant.as_dict()
    assert model.config["calibration"] == variant.calibration
    assert [row["epoch"] for row in history if row["kind"] == "epoch"] == [1, 2]
    for row in history:
        for term in TERMS:
            assert (row[term] is None) == (not on[term]), (row, term)
    for term in TERMS:
        value = summary[f"final_{term}"]
        assert (value is None) == (not on[term]), term
        assert value is None or (math.isfinite(value) and value >= 0), term
    # all weights are 1 here (alpha = beta = delta = 1, gamma of the synthetic dataset = 1): the
    # epoch loss is the sum of its terms
    assert cfg.data.gamma == 1.0
    assert summary["final_loss"] == pytest.approx(sum(summary[f"final_{t}"] or 0.0 for t in TERMS), rel=1e-5)
    assert summary["epochs"] == 2 and summary["train_videos"] == len(world["dataset"].video_ids("train"))
    assert summary["parameters"] > 0 and summary["flops_per_step"] > 0 and summary["windows_per_second"] > 0
    # the module diagnostics: only where the run has the module
    rate = summary["anticipation_positive_rate"]
    assert (rate is None) == (not (variant.cass or variant.anticipation)) and (rate is None or 0 <= rate <= 1)
    gap = summary["calibration_gap"]
    assert gap is None or math.isfinite(gap)
    assert gap is None if not variant.calibration else world["dataset"].video_ids("val") == [] or gap is not None
    epochs, batches = runner.curves(history)
    assert len(epochs) == 2 and len(batches) == len(history) - 2
    # every term has a column (the DVC plot names them all); a switched-off term's is empty
    assert set(TERMS) <= set(epochs.columns)
    assert {t for t in TERMS if epochs[t].notna().all()} == {t for t in TERMS if on[t]}
    assert {t for t in TERMS if epochs[t].isna().all()} == {t for t in TERMS if not on[t]}


def test_onpoint_loss_goes_down_on_a_fixed_set(world):
    # stride 1: every epoch sees the same windows; lr 1e-3 without decay for a short run
    cfg = tiny_cfg("onpoint", epochs=3, train_stride=1, lr=1e-3, lr_step=100)
    _, _, history, _ = runner.train(cfg, world["dataset"], world["paths"], device=CPU, progress=False)
    epochs = [row for row in history if row["kind"] == "epoch"]
    assert len(epochs) == 3
    assert epochs[-1]["loss"] < 0.8 * epochs[0]["loss"], [row["loss"] for row in epochs]
    for term in TERMS:
        assert epochs[-1][term] < epochs[0][term], term


# ----------------------------------------------------------------------------- convergence rule

def _direct(world, cfg):
    dataset, paths = world["dataset"], world["paths"]
    variant, videos = runner.gather_inputs(cfg, dataset, paths)
    data = WindowData(videos, dataset.num_classes, cfg.data.window, list(cfg.data.anchors), cfg.data.anticipation)
    return runner.build_model(cfg, dataset, variant), data, variant


def test_the_convergence_rule_decays_on_a_plateau_stops_on_the_next_and_keeps_the_best(world):
    cfg = tiny_cfg("onpoint", epochs=12, patience=2, lr_decays=1)
    model, data, variant = _direct(world, cfg)
    # epochs 1-3 score 0 (still at the class prior: they must not count as a plateau); best at 5;
    # 6, 7 no better -> plateau: lr x lr_gamma after 7; 8, 9 no better -> plateau again: stop after 9
    scores, states = iter([0.0, 0.0, 0.0, 1.0, 3.0, 2.0, 2.5, 2.0, 2.9, 99.0, 99.0, 99.0]), []

    def evaluate(core):
        assert not core.training                 # (nothing else may run in train mode meanwhile)
        states.append({k: v.clone() for k, v in core.state_dict().items()})
        return next(scores)

    history, _, selection = train_student(model, data, variant, cfg.student, runner.loss_weights(cfg), CPU,
                                          train_stride=cfg.data.train_stride, checkpoints_per_epoch=0,
                                          progress=False, evaluate=_eval_mode(evaluate))
    epochs = [row for row in history if row["kind"] == "epoch"]
    assert [row["val_avg"] for row in epochs] == [0.0, 0.0, 0.0, 1.0, 3.0, 2.0, 2.5, 2.0, 2.9]
    lr = cfg.student.lr
    assert [row["lr"] for row in epochs] == pytest.approx([lr] * 6 + [lr * cfg.student.lr_gamma] * 3)
    assert selection == {"best_epoch": 5, "val_avg": 3.0, "epochs_trained": 9, "stopped_early": True, "lr_decays": 1}
    for name, value in model.state_dict().items():
        assert torch.equal(value, states[4][name]), name
    first = next(iter(states[4]))
    assert not torch.equal(states[4][first], states[8][first])


def test_a_run_resumed_after_an_lr_decay_ends_as_the_uninterrupted_one(world, tmp_path):
    cfg = tiny_cfg("onpoint", epochs=6, patience=1, lr_decays=1)
    scores = [1.0, 0.5, 0.5, 9.0, 9.0, 9.0]       # decay after epoch 2, stop after epoch 3

    def run(resume, start=0, on_epoch=None):
        model, data, variant = _direct(world, cfg)
        values = iter(scores[start:])
        out = train_student(model, data, variant, cfg.student, runner.loss_weights(cfg), CPU,
                            train_stride=cfg.data.train_stride, checkpoints_per_epoch=0, progress=False,
                            resume_path=resume, fingerprint={"t": 1}, evaluate=lambda core: next(values),
                            on_epoch=on_epoch)
        return model, out

    reference, (history, _, selection) = run(None)
    assert selection["epochs_trained"] == 3 and selection["lr_decays"] == 1

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise Interrupted

    resume = tmp_path / "resume.pt"
    with pytest.raises(Interrupted):
        run(resume, on_epoch=stop_after_two)
    model, (history_again, _, selection_again) = run(resume, start=2)
    assert selection_again == selection
    assert [r["lr"] for r in history_again if r["kind"] == "epoch"] == [r["lr"] for r in history if r["kind"] == "epoch"]
    _assert_same_weights(reference, model)


def _eval_mode(evaluate):
    def wrapped(core):
        core.eval()
        return evaluate(core)
    return wrapped


def test_without_patience_every_epoch_runs_and_the_best_is_kept(world):
    cfg = tiny_cfg("onpoint", epochs=3, patience=None)
    model, data, variant = _direct(world, cfg)
    scores = iter([2.0, 1.0, 1.5])
    _, _, selection = train_student(model, data, variant, cfg.student, runner.loss_weights(cfg), CPU,
                                    train_stride=cfg.data.train_stride, checkpoints_per_epoch=0, progress=False,
                                    evaluate=lambda core: next(scores))
    assert selection == {"best_epoch": 1, "val_avg": 2.0, "epochs_trained": 3, "stopped_early": False, "lr_decays": 0}


def test_the_val_score_streams_the_val_videos_through_the_engine(world):
    cfg = tiny_cfg("onpoint")
    dataset = world["dataset"]
    assert dataset.video_ids("val"), "the tiny world needs a val video"
    model, _, variant = _direct(world, cfg)
    score = runner.val_scorer(dataset, variant, cfg.selection)(model.eval())
    assert 0.0 <= score <= 100.0


# ----------------------------------------------------------------------------- resume

class Interrupted(Exception):
    pass


def _stop_in_the_middle_of_the_first_epoch(row):
    if row["epoch"] == 1 and row["batch"] == 2:
        raise Interrupted


@pytest.fixture(scope="module")
def resumed(world, tmp_path_factory):
    """An uninterrupted run, and the same run interrupted after batch 2 of epoch 1 and resumed."""
    folder = tmp_path_factory.mktemp("resume")
    cfg = tiny_cfg("onpoint", checkpoints_per_epoch=1000)       # a save after every batch
    dataset, paths = world["dataset"], world["paths"]
    reference = runner.train(cfg, dataset, paths, device=CPU, progress=False)
    resume_paths = {**paths, "resume": folder / "resume.pt"}
    with pytest.raises(Interrupted):
        runner.train(cfg, dataset, resume_paths, device=CPU, progress=False, on_batch=_stop_in_the_middle_of_the_first_epoch)
    interrupted = torch.load(resume_paths["resume"], weights_only=True)     # plain types and tensors
    again = runner.train(cfg, dataset, resume_paths, device=CPU, progress=False)
    return {"cfg": cfg, "paths": resume_paths, "reference": reference, "interrupted": interrupted, "again": again}


def _assert_same_weights(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resumed_training_ends_with_the_same_weights_bit_for_bit(resumed):
    interrupted = resumed["interrupted"]
    # the interruption came after batch 2 of epoch 1 and its resume save (one after every batch)
    assert interrupted["epoch"] == 0 and interrupted["batch"] == 3
    reference_model, _, reference_history, _ = resumed["reference"]
    model, _, history, _ = resumed["again"]
    _assert_same_weights(reference_model, model)
    batches = [row for row in history if row["kind"] == "batch"]
    assert batches == [row for row in reference_history if row["kind"] == "batch"]


def test_resume_saves_are_spread_over_each_epoch(world, tmp_path):
    """checkpoints_per_epoch: a kill loses at most that share of an epoch, however long the epoch
    (a fixed batch count larger than the epoch, as before, lost up to a whole epoch)."""
    resume = tmp_path / "resume.pt"
    seen = []          # after each batch: the batch index the resume file holds (None: no file yet)

    def record(row):
        seen.append(torch.load(resume, weights_only=True)["batch"] if resume.exists() else None)

    cfg = tiny_cfg("onpoint", epochs=1, checkpoints_per_epoch=3)
    runner.train(cfg, world["dataset"], {**world["paths"], "resume": resume}, device=CPU, progress=False,
                 on_batch=record)
    batches, every = len(seen), math.ceil(len(seen) / 3)
    marks = sorted({b for b in seen if b is not None})
    assert batches >= 6 and marks == list(range(every, batches, every)), (batches, marks)
    assert seen[every - 1] == every and seen[every - 2] is None     # saved right after batch `every`


def test_resumed_history_keeps_the_interrupted_epochs_mean_loss(resumed):
    """The epoch interrupted mid-way still reports the mean loss of all its batches."""
    reference_epochs = [row for row in resumed["reference"][2] if row["kind"] == "epoch"]
    epochs = [row for row in resumed["again"][2] if row["kind"] == "epoch"]
    assert len(epochs) == len(reference_epochs) == 2
    for got, want in zip(epochs, reference_epochs):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-9), (got, want)


def test_resume_at_an_epoch_boundary_is_bit_exact(world, tmp_path):
    dataset, paths = world["dataset"], world["paths"]

    def run(epochs, resume_path):
        cfg = tiny_cfg("onpoint", epochs=epochs)
        variant, videos = runner.gather_inputs(cfg, dataset, paths)
        data = WindowData(videos, dataset.num_classes, 16, [2, 4, 8, 16], 4)
        model = runner.build_model(cfg, dataset, variant)
        history, _, _ = train_student(model, data, variant, cfg.student, runner.loss_weights(cfg), CPU,
                                   train_stride=cfg.data.train_stride, fingerprint={"test": "boundary"},
                                   resume_path=resume_path, checkpoints_per_epoch=0, progress=False)
        return model, history

    reference, reference_history = run(3, None)
    resume_path = tmp_path / "resume.pt"
    run(1, resume_path)                          # "crashes" after epoch 1: its end-of-epoch save remains
    state = torch.load(resume_path, weights_only=True)
    assert (state["epoch"], state["batch"]) == (1, 0)
    model, history = run(3, resume_path)
    _assert_same_weights(reference, model)
    assert history == reference_history


def _one_line(error, path):
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_a_resume_file_from_other_params_or_garbage_is_refused(world, resumed, tmp_path):
    resume_file = tmp_path / "resume.pt"
    resume_file.write_bytes(resumed["paths"]["resume"].read_bytes())
    other = tiny_cfg("onpoint", checkpoints_per_epoch=1000, lr=3e-4)
    with pytest.raises(OnPointError) as error:
        runner.train(other, world["dataset"], {**world["paths"], "resume": resume_file}, device=CPU, progress=False)
    assert "other inputs (differs in: student)" in _one_line(error, resume_file)

    resume_file.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(OnPointError) as error:
        runner.train(resumed["cfg"], world["dataset"], {**world["paths"], "resume": resume_file}, device=CPU,
                     progress=False)
    assert "cannot read the resume file" in _one_line(error, resume_file)


def test_stage_checkpoint_round_trip(world, resumed, tmp_path):
    model, variant, _, summary = resumed["reference"]
    dataset = world["dataset"]
    path = tmp_path / "student.pt"
    runner.save(path, model, dataset, resumed["cfg"], variant, summary)
    loaded, meta = load_student(path)
    rates = dataset.videos.n_steps / dataset.videos.duration
    assert meta["classes"] == dataset.classes and meta["run"] == "onpoint"
    assert meta["steps_per_second"] == pytest.approx(float(np.median(rates)))
    assert meta["config"]["window"] == 16 and meta["config"]["anchors"] == [2, 4, 8, 16]
    windows = torch.randn(3, 16, dataset.meta["feature_dim"])
    model.eval()
    with torch.no_grad():
        want, got = model(windows), loaded(windows)
    for key in want:
        assert torch.equal(want[key], got[key]), key


# ----------------------------------------------------------------------------- data parallel

def _train_directly(root, paths, job, rank, world_size):
    """What a DDP rank runs: the run's inputs, windows, seeded model, then train_student."""
    torch.set_num_threads(1)
    dataset = load_dataset(root)
    cfg = tiny_cfg(job["run"], **job["student"])
    paths = {**paths, **job.get("paths", {})}
    variant, videos = runner.gather_inputs(cfg, dataset, paths)
    data = WindowData(videos, dataset.num_classes, cfg.data.window, list(cfg.data.anchors), cfg.data.anticipation)
    model = runner.build_model(cfg, dataset, variant)
    train_student(model, data, variant, cfg.student, runner.loss_weights(cfg), CPU, progress=False,
                  train_stride=cfg.data.train_stride, checkpoints_per_epoch=cfg.student.checkpoints_per_epoch,
                  rank=rank, world_size=world_size)
    return model


def _ddp_worker(rank, world_size, init_file, root, paths, jobs, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    status = {}
    try:
        for name, job in jobs.items():
            try:
                if job.get("via") == "runner":        # the path stages/train_student.py takes on every rank
                    cfg = tiny_cfg(job["run"], **job["student"])
                    model = runner.train(cfg, load_dataset(root), paths, rank=rank, world_size=world_size,
                                         device=CPU, progress=False)[0]
                else:
                    model = _train_directly(root, paths, job, rank, world_size)
                torch.save(model.state_dict(), Path(out) / f"{name}-{rank}.pt")
                status[name] = "ok"
            except Exception as exc:  # noqa: BLE001 -- recorded for the test to report, rank by rank
                status[name] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        (Path(out) / f"status-{rank}.json").write_text(json.dumps(status))
        dist.destroy_process_group()


def _odd_epoch_job(world):
    """A batch size for which the two ranks get different batch counts when the epoch's sample
    count is odd: rank 0 holds ceil(n/2) samples, rank 1 floor(n/2)."""
    cfg = tiny_cfg("teacher_oat")
    _, videos = runner.gather_inputs(cfg, world["dataset"], world["paths"])
    steps = sum(v.num_steps for v in videos)
    stride = next(s for s in (1, 2, 3, 5) if math.ceil(steps / s) % 2 == 1)
    half = (math.ceil(steps / stride) + 1) // 2
    per_rank = max(d for d in range(1, half // 2 + 1) if half % d == 0)
    assert (half - 1) // per_rank < half // per_rank       # rank 1 has one batch fewer
    return {"run": "teacher_oat", "student": {"epochs": 1, "train_stride": stride, "batch_size": 2 * per_rank}}


NO_DROPOUT = {"dropout": 0.0, "position_dropout": 0.0}


@pytest.fixture(scope="module")
def ddp(world, tmp_path_factory):
    """Two CPU processes (gloo) train several jobs one after the other; weights come back as files."""
    out = tmp_path_factory.mktemp("ddp")
    dense = {"points": str(world["root"] / "dense_points.parquet")}
    jobs = {
        "onpoint": {"run": "onpoint", "student": {}},
        "dense": {"run": "distillation_free", "student": NO_DROPOUT, "paths": dense},
        "stage_path": {"run": "teacher_oat", "student": {"epochs": 1}, "via": "runner"},
        "odd_epoch": _odd_epoch_job(world),            # last: a failure here may leave a rank hanging
    }
    mp.spawn(_ddp_worker, args=(2, str(out / "init"), str(world["root"] / "dataset"), world["paths"], jobs, str(out)),
             nprocs=2, join=True)
    status = [json.loads((out / f"status-{rank}.json").read_text()) for rank in (0, 1)]
    return {"out": out, "status": status, "jobs": jobs, "dense": dense}


def _rank_weights(ddp, name):
    return [torch.load(ddp["out"] / f"{name}-{rank}.pt", weights_only=True) for rank in (0, 1)]


def test_ddp_ranks_end_with_identical_weights(ddp):
    for name in ("onpoint", "dense"):
        assert [s[name] for s in ddp["status"]] == ["ok", "ok"], name
        first, second = _rank_weights(ddp, name)
        for key in first:
            assert torch.equal(first[key], second[key]), (name, key)


def test_ddp_matches_one_process_with_the_same_total_batch(world, ddp):
    """Dropout off and every anchor holding a point: each rank's loss is a plain mean over its half
    of the batch, so averaging the ranks' gradients is the one-process gradient of the full batch."""
    job = ddp["jobs"]["dense"]
    single = _train_directly(world["root"] / "dataset", world["paths"], job, 0, 1).state_dict()
    ranked, _ = _rank_weights(ddp, "dense")
    cfg = tiny_cfg(job["run"], **job["student"])
    initial = runner.build_model(cfg, world["dataset"], RUNS[job["run"]]).state_dict()
    moved = 0
    for key in single:
        if key.endswith(("in_proj_bias", ".k.bias")):
            # attention key biases shift every logit of a query equally: their true gradient is 0,
            # and Adam turns the rounding noise of a 0 gradient into steps of +-lr, which differ
            # between one process and two; what they do to the outputs is nil either way
            continue
        torch.testing.assert_close(ranked[key], single[key], rtol=0, atol=1e-5, msg=key)
        moved += int(not torch.equal(single[key], initial[key]))
    assert moved > 10          # training really changed the point heads, encoder and decoder


def test_ddp_through_the_stage_glue_on_every_rank(ddp):
    """Regression test for a fixed bug: runner.train reads the last epoch row of the history on every rank,
    but only rank 0 records history, so rank 1 fails with IndexError after training and
    `student.processes: 2` makes the stage exit with an error."""
    assert [s["stage_path"] for s in ddp["status"]] == ["ok", "ok"]


def test_ddp_ranks_run_the_same_number_of_batches_when_the_epoch_is_odd(ddp):
    """Regression test for a fixed bug: with an odd number of samples in an epoch, training.py gives rank 0
    ceil(n/2) and rank 1 floor(n/2) samples and computes each rank's batch count from its own
    share; when ceil(n/2) is a multiple of the per-rank batch, rank 0 runs one batch more and
    its gradient all-reduce waits for a peer that has finished (a hang, or a gloo error)."""
    assert [s["odd_epoch"] for s in ddp["status"]] == ["ok", "ok"]

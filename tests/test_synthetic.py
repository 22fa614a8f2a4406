"""The embedded benchmark: deterministic, the statistics its stage reports, and real structure."""

import json

import numpy as np
import pytest

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import ClassPatterns, generate_synthetic, synthesize_from_annotations
from tests.conftest import tiny_synthetic


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_features(tmp_path, raw_params):
    syn = tiny_synthetic(raw_params)
    generate_synthetic(syn, tmp_path / "a", progress=False)
    generate_synthetic(syn, tmp_path / "b", progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    generate_synthetic({**syn, "seed": syn["seed"] + 1}, tmp_path / "c", progress=False)
    a, c = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "c")
    assert not np.array_equal(a.features(a.video_ids()[0]), c.features(c.video_ids()[0]))


def test_folder_is_canonical_and_two_stream(tmp_path, raw_params):
    syn = tiny_synthetic(raw_params, num_train_videos=10, val_fraction=0.2)
    generate_synthetic(syn, tmp_path / "d", progress=False)
    ds = load_dataset(tmp_path / "d")
    assert ds.videos.subset.value_counts().to_dict() == {"train": 8, "test": 3, "val": 2}
    assert ds.meta["streams"] == 2 and ds.meta["feature_dim"] == 2 * syn["stream_dim"]
    for video_id in ds.video_ids():
        row = ds.video(video_id)
        feats = ds.features(video_id)
        assert feats.dtype == np.float32 and feats.shape == (row["n_steps"], 2 * syn["stream_dim"])
        assert abs(row["n_steps"] / row["duration"] - syn["steps_per_second"]) < 0.05
    seg = ds.segments
    lengths = seg.end - seg.start
    lo, hi = syn["action_seconds_range"]
    assert lengths.between(lo - 1e-9, hi + 1e-9).all()
    for _, group in seg.groupby("video_id"):   # instances never overlap, gaps respected
        group = group.sort_values("start")
        assert (group.start.to_numpy()[1:] - group.end.to_numpy()[:-1] >= syn["min_gap_seconds"] - 1e-9).all()


def test_sparse_and_dense_profiles_differ_like_thumos_and_egtea(tmp_path, raw_params):
    generate_synthetic(tiny_synthetic(raw_params, "sparse"), tmp_path / "s", progress=False)
    generate_synthetic(tiny_synthetic(raw_params, "dense", video_seconds=[120, 180]), tmp_path / "d", progress=False)

    def coverage(ds):
        return (ds.segments.end - ds.segments.start).sum() / ds.videos.duration.sum()

    sparse, dense = load_dataset(tmp_path / "s"), load_dataset(tmp_path / "d")
    assert coverage(dense) > 1.5 * coverage(sparse)
    assert dense.segments.groupby("video_id").label.nunique().mean() > sparse.segments.groupby("video_id").label.nunique().mean()


def test_default_sparse_val_split_is_a_representative_sample(tmp_path, raw_params):
    """The val videos pick every run's epoch, so they must look like the videos the runs train on.
    At 8 val videos (val_fraction 0.1) the draw held 62 instances averaging 4.6 s against 3.7 s in
    train (14.5% longer than 8 s, against 8.3%), and the point-supervised rows, which gain most on long
    actions, led the fully supervised reference on val while trailing it on test."""
    syn = raw_params["datasets"]["synthetic"]["generator"]
    generate_synthetic(syn, tmp_path / "d", progress=False)
    ds = load_dataset(tmp_path / "d")
    seg = ds.segments.assign(length=ds.segments.end - ds.segments.start)
    val, train = (seg[seg.video_id.isin(ds.video_ids(s))] for s in ("val", "train"))
    assert len(ds.video_ids("val")) >= 16 and len(val) >= 150
    assert abs(val.length.mean() / train.length.mean() - 1) < 0.05
    assert abs((val.length > 8).mean() - (train.length > 8).mean()) < 0.02


def _motion_projection(ds, syn):
    """Per instance: motion features of its middle step projected on every class's body pattern."""
    patterns = ClassPatterns(syn["num_classes"], syn["stream_dim"], syn["phase_contrast"], syn["confusable_pairs"],
                             syn["confusable_similarity"], np.random.default_rng([syn["seed"], 0]))
    rows = []
    for seg in ds.segments.itertuples():
        feats = ds.features(seg.video_id)
        rate = ds.video(seg.video_id)["n_steps"] / ds.video(seg.video_id)["duration"]
        mid = int((seg.start + seg.end) / 2 * rate)
        motion = feats[mid, syn["stream_dim"]:]
        rows.append((ds.classes.index(seg.label), patterns.motion[:, 1] @ motion))
    return rows, patterns


def test_class_evidence_is_present_but_noisy(tmp_path, raw_params):
    syn = tiny_synthetic(raw_params, num_train_videos=20)
    generate_synthetic(syn, tmp_path / "d", progress=False)
    rows, _ = _motion_projection(load_dataset(tmp_path / "d"), syn)
    hits = np.mean([np.argmax(proj) == label for label, proj in rows])
    # a single step's motion points to its class far more often than chance, yet not always
    assert 3.0 / syn["num_classes"] < hits < 0.98


def test_confusable_pairs_share_appearance_and_phases_differ(raw_params):
    syn = tiny_synthetic(raw_params)
    patterns = ClassPatterns(syn["num_classes"], syn["stream_dim"], syn["phase_contrast"], syn["confusable_pairs"],
                             syn["confusable_similarity"], np.random.default_rng(0))
    a, b = patterns.confusable[0]
    unrelated = 2 * syn["confusable_pairs"]  # first class outside any pair
    assert patterns.appearance[a] @ patterns.appearance[b] > 0.6
    assert abs(patterns.appearance[a] @ patterns.appearance[unrelated]) < 0.6
    onset, body, offset = patterns.motion[a]
    assert onset @ body < 0.9 and offset @ body < 0.9


def test_hard_negatives_put_class_evidence_outside_actions(tmp_path, raw_params):
    def background_energy(rate):
        syn = tiny_synthetic(raw_params, num_train_videos=10, hard_negatives_per_minute=rate, noise=0.0,
                             clutter_per_minute=0.0, context=0.0)
        generate_synthetic(syn, tmp_path / f"h{rate}", progress=False)
        ds = load_dataset(tmp_path / f"h{rate}")
        patterns = ClassPatterns(syn["num_classes"], syn["stream_dim"], syn["phase_contrast"], syn["confusable_pairs"],
                                 syn["confusable_similarity"], np.random.default_rng([syn["seed"], 0]))
        energy = []
        for video_id in ds.video_ids():
            feats, row = ds.features(video_id), ds.video(video_id)
            t = (np.arange(row["n_steps"]) + 0.5) * row["duration"] / row["n_steps"]
            inside = np.zeros(len(t), bool)
            for seg in ds.segments_of(video_id).itertuples():
                inside |= (t > seg.start - 2) & (t < seg.end + 2)
            energy.append(np.abs(feats[~inside, : syn["stream_dim"]] @ patterns.appearance.T).max(axis=1))
        return np.concatenate(energy).mean()

    assert background_energy(6.0) > 1.2 * background_energy(0.0)


def test_annotation_driven_mode_follows_real_egtea_timing(tmp_path, raw_params, shared_data):
    ann = shared_data / "egtea" / "egtea_annotations_split1.json"
    syn = tiny_synthetic(raw_params, "dense", stream_dim=8)
    summary = synthesize_from_annotations(ann, syn, tmp_path / "egtea_syn", progress=False)
    ds = load_dataset(tmp_path / "egtea_syn")
    database = json.loads(ann.read_text())["database"]
    assert summary["videos"] == len(database) == len(ds.videos)
    assert ds.num_classes == 22
    real = sum(len(v["annotations"]) for v in database.values())
    assert len(ds.segments) == real
    counts = ds.videos.subset.replace({"val": "train"}).value_counts().to_dict()
    assert counts == {"train": 64, "test": 22}
    video_id = ds.video_ids("test")[0]
    assert ds.n_steps(video_id) == round(database[video_id]["duration"] * syn["steps_per_second"])


def test_annotation_driven_mode_rejects_a_broken_file(tmp_path, raw_params):
    broken = tmp_path / "broken.json"
    broken.write_text('{"database": {"v1": {"subset": "train", "duration": 10, ')
    with pytest.raises(Exception, match="broken.json: not a `database` annotation JSON"):
        synthesize_from_annotations(broken, tiny_synthetic(raw_params), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# `onpoint synth` on bad or hostile annotation files (issue 12): one-line errors, nothing written
# outside OUT, nothing deleted that is not a dataset, no success message without a dataset.

LABELS = "abcdefgh"


def _annotations(path, extra=None, drop_first=False):
    """A small `database` file: 8 videos of 20 s with one segment each (classes a..h), plus `extra`."""
    database = {f"v{i}": {"subset": "train" if i < 5 else "test", "duration": 20.0, "fps": 30.0,
                          "annotations": [{"segment": [1.0, 5.0], "label": LABELS[i]}]} for i in range(8)}
    database.update(extra or {})
    path.write_text(json.dumps({"database": database}))
    return path


def _synth(*args):
    from click.testing import CliRunner

    from onpoint_core.cli import main
    from tests.conftest import REPO_ROOT

    return CliRunner().invoke(main, ["synth", "--params", str(REPO_ROOT / "params.yaml"), *map(str, args)])


def _one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("video_id", ["../../elsewhere/x", "ABSOLUTE", ".hidden"])
def test_synth_refuses_a_video_id_that_is_not_a_file_name(tmp_path, video_id):
    """Guard: an id `../../x` or an absolute path wrote .npy files outside OUT (exit 0)."""
    video_id = str(tmp_path / "abs" / "x") if video_id == "ABSOLUTE" else video_id
    ann = _annotations(tmp_path / "ann.json", {video_id: {"subset": "test", "duration": 20.0, "annotations": []}})
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    _one_line_error(_synth(ann, work / "out"), ann, video_id, "file name")
    assert not list(tmp_path.rglob("*.npy")) and not (work / "out").exists()
    assert not [p for p in work.iterdir()]          # no temporary folder either


def test_synth_refuses_to_replace_a_folder_that_is_not_a_dataset(tmp_path):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    _one_line_error(_synth(_annotations(tmp_path / "ann.json"), out), out, "refusing")
    assert (out / "notes.txt").read_text() == "keep me" and (out / "sub").is_dir()
    # an existing dataset folder is replaced, as before
    assert _synth(_annotations(tmp_path / "ann.json"), tmp_path / "ds").exit_code == 0
    assert _synth(_annotations(tmp_path / "ann.json"), tmp_path / "ds").exit_code == 0


def test_synth_error_while_finishing_the_folder_is_not_swallowed(tmp_path):
    """A point outside its video is found when the folder is finished: that error printed a success
    summary with exit 0 and OUT was never written; an older dataset silently stayed."""
    ann = _annotations(tmp_path / "ann.json")
    points = tmp_path / "points.csv"
    points.write_text("class,video_id,point\na,v0,9000\n")     # frame 9000 at 30 fps = 300 s > 20 s
    out = tmp_path / "out"
    _one_line_error(_synth(ann, out, "--points", points), out / "points.parquet", "v0", "outside the video")
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    assert _synth(ann, out).exit_code == 0
    before = (out / "videos.parquet").read_bytes()
    _one_line_error(_synth(ann, out, "--points", points), "outside the video")
    assert (out / "videos.parquet").read_bytes() == before and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("case, entry, fragments", [
    ("zero", {"subset": "test", "duration": 0, "annotations": []}, ["z", "duration", "positive"]),
    ("negative", {"subset": "test", "duration": -5, "annotations": []}, ["z", "duration", "-5"]),
    ("nan", {"subset": "test", "duration": float("nan"), "annotations": []}, ["z", "duration", "nan"]),
    ("not an object", [1, 2], ["z", "not an object"]),
    ("long id", None, ["300 bytes", "file name"]),
])
def test_synth_ordinary_bad_input_is_one_line(tmp_path, case, entry, fragments):
    extra = {"x" * 300: {"subset": "test", "duration": 20.0, "annotations": []}} if case == "long id" else {"z": entry}
    ann = _annotations(tmp_path / "ann.json", extra)
    _one_line_error(_synth(ann, tmp_path / "out"), ann, *fragments)
    assert not (tmp_path / "out").exists()


def test_synth_with_fewer_classes_than_confusable_pairs(tmp_path):
    """Two classes against the profile's 3 confusable pairs (6 classes) raised IndexError."""
    database = {f"v{i}": {"subset": "train" if i < 3 else "test", "duration": 20.0,
                          "annotations": [{"segment": [2.0, 6.0], "label": "ab"[i % 2]}]} for i in range(5)}
    ann = tmp_path / "two.json"
    ann.write_text(json.dumps({"database": database}))
    result = _synth(ann, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert load_dataset(tmp_path / "out").classes == ["a", "b"]


def test_synth_refuses_a_video_listed_twice(tmp_path):
    """JSON keeps the last of two equal keys: the training video v1 silently became a test video."""
    ann = _annotations(tmp_path / "ann.json")
    text = ann.read_text().replace('"v1": {"subset": "train"', '"v1": {"subset": "train", "duration": 20.0, '
                                   '"annotations": []}, "v1": {"subset": "test"', 1)
    ann.write_text(text)
    _one_line_error(_synth(ann, tmp_path / "out"), ann, "v1", "twice", "'train'", "'test'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("video_id", ["../outside", ".hidden", "a/b"])
def test_loading_a_hand_edited_folder_refuses_a_video_id_that_is_not_a_file_name(tmp_path, raw_params, video_id):
    """Guard: only the writers checked ids, so a folder edited by hand (data/imported/...) with an id
    `../outside` loaded, and teacher_cache would have written cas/../outside.npy outside its folder."""
    import pandas as pd

    from onpoint_core.errors import OnPointError

    generate_synthetic(tiny_synthetic(raw_params), tmp_path / "d", progress=False)
    videos = pd.read_parquet(tmp_path / "d" / "videos.parquet")
    old = videos.video_id.iloc[0]
    for table in ("videos", "segments"):
        frame = pd.read_parquet(tmp_path / "d" / f"{table}.parquet")
        frame.loc[frame.video_id == old, "video_id"] = video_id
        frame.to_parquet(tmp_path / "d" / f"{table}.parquet")
    with pytest.raises(OnPointError, match="videos.parquet: video .*file name"):
        load_dataset(tmp_path / "d", check_files=False)


def test_loading_a_folder_without_meta_json_names_the_file(tmp_path, raw_params):
    """Guard: without meta.json the folder loaded, and building a network died on meta['feature_dim']
    with a KeyError traceback."""
    from onpoint_core.errors import OnPointError

    generate_synthetic(tiny_synthetic(raw_params), tmp_path / "d", progress=False)
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    (tmp_path / "d" / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "feature_dim"}))
    with pytest.raises(OnPointError, match="meta.json: needs \"feature_dim\""):
        load_dataset(tmp_path / "d")
    (tmp_path / "d" / "meta.json").unlink()
    with pytest.raises(OnPointError, match="meta.json: missing"):
        load_dataset(tmp_path / "d")


def test_synth_val_fraction_option_carves_that_share(tmp_path, raw_params):
    """`--val-fraction` replaces the profile generator's share (an annotation file has its own size)."""
    ann = _annotations(tmp_path / "ann.json")               # 5 training videos
    assert _synth(ann, tmp_path / "own").exit_code == 0
    own = round(5 * raw_params["datasets"]["synthetic"]["generator"]["val_fraction"])
    assert len(load_dataset(tmp_path / "own").video_ids("val")) == own
    assert _synth(ann, tmp_path / "more", "--val-fraction", 0.6).exit_code == 0
    assert len(load_dataset(tmp_path / "more").video_ids("val")) == 3 != own
    result = _synth(ann, tmp_path / "bad", "--val-fraction", 1.0)
    assert result.exit_code == 2 and "--val-fraction" in result.output and not (tmp_path / "bad").exists()

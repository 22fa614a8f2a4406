"""Importers of the public layouts.

The full-import tests read the real annotation files in ../shared/data (and skip without them); the
others run everywhere on a small THUMOS'14-like set of annotation files written here in the same
formats (`small_thumos`). Feature files are generated here with the right shapes (they are not
public): sparse zero .npy files for the full THUMOS'14 HR-Pro import (cheap to create), small arrays
elsewhere. The expected counts come from the papers or the public annotation files or are recomputed here from
the raw files.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.format import open_memmap

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.importers import import_layout
from onpoint_core.errors import OnPointError
from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA  # ../shared/data, or $ONPOINT_SHARED_DATA
THUMOS = SHARED / "thumos14"
EGTEA = SHARED / "egtea"
THUMOS_FILES = ["gt_full.json", "point_gaussian.csv", "split_train.txt", "split_test.txt", "Ambiguous_test.txt"]


def _need(*paths):
    for path in paths:
        if not path.exists():
            pytest.skip(f"real annotation file {path} is absent (../shared/data is not checked out beside the repo)")


def _parsed(folder):
    """THUMOS'14 annotation files of `folder` (real or small), parsed."""
    database = json.loads((folder / "gt_full.json").read_text())["database"]
    train = (folder / "split_train.txt").read_text().split()
    test = (folder / "split_test.txt").read_text().split()
    with open(folder / "point_gaussian.csv", newline="") as handle:
        points = list(csv.DictReader(handle))
    return {"db": database, "train": train, "test": test, "points": points, "dir": folder}


@pytest.fixture(scope="module")
def thumos():
    """The real THUMOS'14 annotation files, parsed once."""
    _need(*(THUMOS / name for name in THUMOS_FILES))
    return _parsed(THUMOS)


THUMOS_CLASSES = ["BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
                  "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
                  "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus",
                  "VolleyballSpiking"]


def write_small_thumos(folder, n_train=15, n_test=6):
    """THUMOS'14-like annotation files in the real formats: gt_full.json (Validation/Test, fps 30, 25
    or 29.97, two segments a video covering all 20 classes, one past the video end), split files,
    point_gaussian.csv (one LACP point per training segment), Ambiguous_test.txt, and one THUMOS test
    video HR-Pro excludes (in the JSON, not in split_test.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    train = [f"video_validation_{i:07d}" for i in range(1, n_train + 1)]
    test = [f"video_test_{i:07d}" for i in range(1, n_test + 1)]
    database, points = {}, []
    for k, video_id in enumerate(train + test + ["video_test_0000270"]):
        fps, duration = (30.0, 25.0, 29.97)[k % 3], 12.0 + 1.5 * k
        segments = [[1.0, 3.0], [5.0, 7.5] if k != 2 else [duration - 1.0, duration + 2.0]]
        anns = []
        for j, segment in enumerate(segments):
            label = THUMOS_CLASSES[(2 * k + j) % 20]
            anns.append({"label": label, "segment": segment, "segment(frames)": [s * fps for s in segment],
                         "label_id": THUMOS_CLASSES.index(label)})
            if video_id in train:
                points.append(f"{label},{THUMOS_CLASSES.index(label)},{segment[0] * fps:g},{segment[1] * fps:g},"
                              f"{video_id},{int(min(sum(segment) / 2, duration - 0.5) * fps)}")
        database[video_id] = {"subset": "Test" if "test" in video_id else "Validation", "duration": duration,
                              "fps": fps, "annotations": anns}
    (folder / "gt_full.json").write_text(json.dumps({"version": "Thumos14-30fps", "database": database}))
    (folder / "split_train.txt").write_text("\n".join(train) + "\n")
    (folder / "split_test.txt").write_text("\n".join(test) + "\n")
    (folder / "point_gaussian.csv").write_text("class,class_index,start_frame,stop_frame,video_id,point\n"
                                               + "\n".join(points) + "\n")
    (folder / "Ambiguous_test.txt").write_text(f"{test[0]}  0.5 0.9\n{test[1]}  2.0 4.0\n")
    return folder


@pytest.fixture(scope="module")
def small_thumos(tmp_path_factory):
    """The small THUMOS'14-like annotation files (see write_small_thumos), parsed once: run everywhere."""
    return _parsed(write_small_thumos(tmp_path_factory.mktemp("small_thumos")))


def _i3d_steps(duration):
    return int(round(duration * 25 / 16))


def _sparse_zeros(path, n_steps, dim=2048):
    """A float32 zero .npy that costs no disk: open_memmap only seeks to the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = open_memmap(path, mode="w+", dtype=np.float32, shape=(n_steps, dim))
    del array


def _hrpro_root(root, thumos, with_features, train=None, test=None, gt_text=None, csv_text=None):
    """An HR-Pro layout under `root`: real annotation files (linked) unless replaced, features for some videos."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "point_labels").mkdir(exist_ok=True)
    files = {"gt_full.json": gt_text, "point_labels/point_gaussian.csv": csv_text,
             "split_train.txt": None if train is None else "\n".join(train) + "\n",
             "split_test.txt": None if test is None else "\n".join(test) + "\n",
             "Ambiguous_test.txt": None}
    for name, text in files.items():
        target = root / name
        if text is None:
            os.symlink(thumos["dir"] / Path(name).name, target)
        else:
            target.write_text(text)
    test_ids = set(thumos["test"])
    for video_id in with_features:
        folder = "test" if video_id in test_ids else "train"
        _sparse_zeros(root / "features" / folder / f"{video_id}.npy", _i3d_steps(thumos["db"][video_id]["duration"]))
    return root


def _shortest(thumos, split, n):
    return sorted(thumos[split], key=lambda v: thumos["db"][v]["duration"])[:n]


def _snapshot(folder):
    """Names, sizes and inodes of everything under `folder` (to prove a failed merge changed nothing)."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_ino) for p in folder.rglob("*"))


def _no_leftovers(out):
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ---------------------------------------------------------------------------------------------
# THUMOS'14, HR-Pro layout, full import (sparse 2048-d features)


@pytest.fixture(scope="module")
def hrpro_full(thumos, tmp_path_factory):
    base = tmp_path_factory.mktemp("hrpro_full")
    root = _hrpro_root(base / "root", thumos, thumos["train"] + thumos["test"])
    summary = import_layout("hrpro", root, base / "out", progress=False)
    return summary, load_dataset(base / "out")


def test_hrpro_full_counts(hrpro_full, thumos):
    summary, ds = hrpro_full
    videos = ds.videos
    trainval = videos[videos.subset.isin(["train", "val"])]
    test = videos[videos.subset == "test"]
    assert len(trainval) == 200 and set(trainval.video_id) == set(thumos["train"])
    assert len(test) == 210 and set(test.video_id) == set(thumos["test"])
    assert (videos.subset == "val").sum() == 20                     # 10% of the 200 training videos
    for blocked in ("video_test_0000270", "video_test_0001292", "video_test_0001496"):
        assert blocked not in set(videos.video_id)
    seg_subset = ds.segments.video_id.map(dict(zip(videos.video_id, videos.subset)))
    assert seg_subset.isin(["train", "val"]).sum() == 3007
    assert (seg_subset == "test").sum() == 3311
    assert len(ds.points) == 3003
    assert ds.classes == sorted(ds.classes) and len(ds.classes) == 20
    assert ds.classes[0] == "BaseballPitch" and ds.classes[-1] == "VolleyballSpiking"
    assert summary["videos"]["train"] + summary["videos"]["val"] == 200 and summary["videos"]["test"] == 210
    assert summary["points"] == 3003 and summary["classes"] == 20
    assert ds.meta["feature_dim"] == 2048 and not ds.has_teacher_features


def test_hrpro_full_features_and_times(hrpro_full, thumos):
    _, ds = hrpro_full
    db = thumos["db"]
    steps = dict(zip(ds.videos.video_id, ds.videos.n_steps))
    assert all(steps[v] == _i3d_steps(db[v]["duration"]) for v in steps)
    features = ds.features("video_test_0000004")
    assert features.dtype == np.float32 and features.shape == (_i3d_steps(33.83), 2048)
    # A point's time is its frame over the video's own fps (29.97 / 25 / 24 fps videos exist).
    expected = sorted((r["video_id"], r["class"], float(r["point"]) / db[r["video_id"]]["fps"]) for r in thumos["points"])
    got = sorted(ds.points[["video_id", "label", "time"]].itertuples(index=False, name=None))
    assert [(v, c) for v, c, _ in got] == [(v, c) for v, c, _ in expected]
    np.testing.assert_allclose([t for *_, t in got], [t for *_, t in expected], rtol=0, atol=1e-9)


def test_hrpro_full_reports_real_quirks(hrpro_full, thumos):
    summary, ds = hrpro_full
    db = thumos["db"]
    # Segments past the video end (recounted from the raw file): clipped, kept, never outside the video.
    past_end = [(v, a) for v in thumos["train"] + thumos["test"] for a in db[v]["annotations"]
                if a["segment"][1] > db[v]["duration"]]
    assert summary["warnings"]["segments_clipped"] == len(past_end) > 0
    duration = ds.segments.video_id.map(dict(zip(ds.videos.video_id, ds.videos.duration)))
    assert (ds.segments.end <= duration + 1e-9).all() and (ds.segments.start <= ds.segments.end).all()
    # HR-Pro snippet collisions, recounted: same video, same int(point * 25 / (fps * 16)).
    keys = [(r["video_id"], int(float(r["point"]) * 25 / (db[r["video_id"]]["fps"] * 16))) for r in thumos["points"]]
    assert summary["warnings"]["point_collisions"] == len(keys) - len(set(keys)) > 0
    assert summary["warnings"]["subsets_renamed"] == {"Validation->train": 200, "Test->test": 210}
    # Test videos of gt_full.json that split_test.txt leaves out are reported, not imported.
    dropped = {v for v, e in db.items() if e["subset"] == "Test" and v not in thumos["test"]}
    assert set(summary["skipped"]["not_in_split"]) == dropped and dropped
    assert summary["skipped"]["no_features"] == []
    ambiguous = pd.read_parquet(ds.root / "ambiguous.parquet")
    with open(THUMOS / "Ambiguous_test.txt") as handle:
        in_split = [line.split()[0] for line in handle if line.split() and line.split()[0] in set(thumos["test"])]
    assert len(ambiguous) == len(in_split) and set(ambiguous.video_id) == set(in_split)


# ---------------------------------------------------------------------------------------------
# Small HR-Pro roots for the merge and the bad-input cases


MINI_TRAIN = 4
MINI_TEST = 2


@pytest.fixture
def mini(small_thumos, tmp_path):
    """An HR-Pro root with split files listing a few short videos (all with features)."""
    thumos = small_thumos
    train, test = _shortest(thumos, "train", MINI_TRAIN), _shortest(thumos, "test", MINI_TEST)

    def make(name="root", **kwargs):
        return _hrpro_root(tmp_path / name, thumos, kwargs.pop("with_features", train + test), train, test, **kwargs)

    return {"make": make, "train": train, "test": test, "out": tmp_path / "out", "db": thumos["db"],
            "dir": thumos["dir"]}


def test_hrpro_mini_import_and_missing_features(mini):
    train, test = mini["train"], mini["test"]
    root = mini["make"](with_features=train[:-1] + test)
    summary = import_layout("hrpro", root, mini["out"], progress=False, val_fraction=0.0)
    ds = load_dataset(mini["out"])
    assert sorted(ds.videos.video_id) == sorted(train[:-1] + test)
    assert summary["skipped"]["no_features"] == [train[-1]]
    # Points of the videos that were not imported are dropped and counted; the rest are kept.
    assert not ds.points.video_id.isin([train[-1]]).any()
    assert summary["warnings"]["points_dropped"] > 0
    assert set(ds.points.video_id) <= set(train[:-1])


def _expect_error(call, *fragments):
    with pytest.raises(OnPointError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


def test_truncated_annotation_json(mini):
    text = (mini["dir"] / "gt_full.json").read_text()
    root = mini["make"](gt_text=text[: len(text) // 2])
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False), root / "gt_full.json", "JSON")
    _no_leftovers(mini["out"])


def test_points_csv_missing_column(mini):
    rows = (mini["dir"] / "point_gaussian.csv").read_text().splitlines()
    header = rows[0].split(",")
    drop = header.index("point")
    text = "\n".join(",".join(c for i, c in enumerate(r.split(",")) if i != drop) for r in rows) + "\n"
    root = mini["make"](csv_text=text)
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False),
                  root / "point_labels" / "point_gaussian.csv", "point")
    _no_leftovers(mini["out"])


def _edit_point_row(mini, edit):
    """The real CSV with one row of the first mini training video changed by `edit(row)`."""
    video = mini["train"][0]
    with open(mini["dir"] / "point_gaussian.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    row = next(r for r in rows if r["video_id"] == video)
    edit(row)
    lines = [",".join(rows[0].keys())] + [",".join(r.values()) for r in rows]
    return video, "\n".join(lines) + "\n"


def test_points_csv_unknown_class(mini):
    video, text = _edit_point_row(mini, lambda r: r.update({"class": "Juggling"}))
    root = mini["make"](csv_text=text)
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False),
                  root / "point_labels" / "point_gaussian.csv", video, "Juggling")
    _no_leftovers(mini["out"])


def test_point_outside_its_video(mini):
    db = mini["db"]
    video = mini["train"][0]
    beyond = int((db[video]["duration"] + 5) * db[video]["fps"])
    _, text = _edit_point_row(mini, lambda r: r.update({"point": str(beyond)}))
    root = mini["make"](csv_text=text)
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False),
                  root / "point_labels" / "point_gaussian.csv", video, "outside")
    _no_leftovers(mini["out"])


def _replace_features(root, mini, video, array):
    folder = "test" if video in mini["test"] else "train"
    path = root / "features" / folder / f"{video}.npy"
    path.unlink()
    np.save(path, array)
    return path


def _last_train(mini):
    """The training video imported last (ids are imported in sorted order), so others come first."""
    return sorted(mini["train"] + mini["test"])[-1]


def test_features_with_nan(mini):
    root = mini["make"]()
    video = mini["train"][0]
    array = np.zeros((_i3d_steps(mini["db"][video]["duration"]), 2048), np.float32)
    array[3, 7] = np.nan
    path = _replace_features(root, mini, video, array)
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False), path, video, "NaN")
    _no_leftovers(mini["out"])


def test_features_one_dimensional(mini):
    root = mini["make"]()
    video = mini["test"][0]
    path = _replace_features(root, mini, video, np.zeros(_i3d_steps(mini["db"][video]["duration"]), np.float32))
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False), path, video, "2-D")
    _no_leftovers(mini["out"])


def test_features_dimension_differs_from_other_videos(mini):
    root = mini["make"]()
    video = _last_train(mini)
    path = _replace_features(root, mini, video, np.zeros((_i3d_steps(mini["db"][video]["duration"]), 1024), np.float32))
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False), path, video, "1024", "2048")
    _no_leftovers(mini["out"])


def test_feature_length_disagrees_with_duration(mini):
    root = mini["make"]()
    video = mini["train"][1]
    n = _i3d_steps(mini["db"][video]["duration"])
    path = _replace_features(root, mini, video, np.zeros((n * 2 + 5, 2048), np.float32))
    _expect_error(lambda: import_layout("hrpro", root, mini["out"], progress=False), path, video, "steps")
    _no_leftovers(mini["out"])
    # The tolerance is a parameter: a loose one accepts the same file.
    import_layout("hrpro", root, mini["out"], progress=False, duration_tolerance=1.5)
    assert load_dataset(mini["out"]).n_steps(video) == n * 2 + 5


def test_refuses_to_replace_a_foreign_folder(mini):
    root = mini["make"]()
    out = mini["out"]
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _expect_error(lambda: import_layout("hrpro", root, out, progress=False), out, "refusing")
    assert (out / "notes.txt").read_text() == "mine"


def test_teacher_only_import_serves_both(mini):
    root = mini["make"]()
    import_layout("hrpro", root, mini["out"], features_for="teacher", progress=False)
    ds = load_dataset(mini["out"])
    assert not ds.has_teacher_features and ds.meta["features"]["imported_for"] == "teacher"
    video = mini["train"][0]
    assert ds.teacher_features(video).shape == ds.features(video).shape == (ds.n_steps(video), 2048)


# ---------------------------------------------------------------------------------------------
# THUMOS'14, OAT layout (pickles) and the merge of both layouts into one folder


def _oat_json(db, validation=()):
    """thumos14_v2.json as OAT ships it (subset train|test, segment_frame, labelIndex), from gt_full.json.

    `validation`: training videos whose subset is spelt 'validation' instead (both spellings occur).
    """
    database = {}
    for video_id, entry in sorted(db.items()):
        subset = "test" if entry["subset"] == "Test" else ("validation" if video_id in validation else "train")
        database[video_id] = {
            "subset": subset, "duration": entry["duration"], "fps": entry["fps"],
            "duration_frame": int(entry["duration"] * entry["fps"]),
            "annotations": [{"segment": a["segment"], "segment_frame": a["segment(frames)"],
                             "label": a["label"], "labelIndex": a["label_id"] + 1} for a in entry["annotations"]],
        }
    return {"version": "thumos14_v2", "database": database}


def _oat_root(root, db, train, test, json_db=None, steps_per_second=4.0, drop_flow=None):
    root.mkdir(parents=True)
    (root / "thumos14_v2.json").write_text(json.dumps(json_db or _oat_json(db, validation=train[:2])))
    for ids, name in ((train, "thumos_all_feature_val_V3.pickle"), (test, "thumos_all_feature_test_V3.pickle")):
        table = {}
        for video_id in ids:
            n = int(round(db[video_id]["duration"] * steps_per_second))
            table[video_id] = {"rgb": np.full((n, 2048), 1.0, np.float32), "flow": np.full((n, 2048), 2.0, np.float32)}
            if video_id == drop_flow:
                del table[video_id]["flow"]
        with open(root / name, "wb") as handle:
            pickle.dump(table, handle)
    return root


@pytest.fixture
def oat_setup(small_thumos, tmp_path):
    thumos = small_thumos
    db = thumos["db"]
    train, test = _shortest(thumos, "train", 11), _shortest(thumos, "test", 4)
    return {"db": db, "train": train, "test": test, "tmp": tmp_path, "thumos": thumos,
            "root": lambda **kw: _oat_root(tmp_path / kw.pop("name", "oat"), db, train, test, **kw)}


def test_oat_subset_import(oat_setup):
    s = oat_setup
    root, out = s["root"](), s["tmp"] / "out"
    summary = import_layout("oat", root, out, progress=False)
    ds = load_dataset(out)
    assert sorted(ds.videos.video_id) == sorted(s["train"] + s["test"])
    assert summary["videos"]["train"] + summary["videos"]["val"] == 11 and summary["videos"]["test"] == 4
    # Every other video of the annotation file lacks features: skipped and reported; the three test
    # videos HR-Pro excludes are left out even without split files.
    blocked = {"video_test_0000270", "video_test_0001292", "video_test_0001496"} & set(s["db"])
    assert set(summary["skipped"]["not_in_split"]) == blocked
    assert len(summary["skipped"]["no_features"]) == len(s["db"]) - len(blocked) - 15
    assert summary["warnings"]["subsets_renamed"]["validation->train"] == 2
    assert len(ds.classes) == 20 and ds.classes == sorted(ds.classes)   # from the whole file
    video = s["train"][0]
    features = ds.features(video)
    assert features.shape == (int(round(s["db"][video]["duration"] * 4)), 4096)
    assert (features[:, :2048] == 1.0).all() and (features[:, 2048:] == 2.0).all()   # rgb, then flow
    expected = sum(len(s["db"][v]["annotations"]) for v in s["train"] + s["test"])
    assert len(ds.segments) == expected and ds.points is None


def test_oat_pickle_entry_without_flow(oat_setup):
    s = oat_setup
    video = s["test"][1]
    root, out = s["root"](drop_flow=video), s["tmp"] / "out"
    _expect_error(lambda: import_layout("oat", root, out, progress=False),
                  root / "thumos_all_feature_test_V3.pickle", video, "flow")
    _no_leftovers(out)


def _merge_roots(s):
    """An HR-Pro root with features for the OAT videos plus three more, and the OAT root.

    The OAT annotation file lacks one segment of a shared video (the two real files are not identical
    either), so which import's tables the merge keeps is visible.
    """
    extra = _shortest(s["thumos"], "train", 14)[11:]
    hr_train, hr_test = s["train"] + extra, s["test"]
    hr_root = _hrpro_root(s["tmp"] / "hrpro", s["thumos"], hr_train + hr_test, hr_train, hr_test)
    oat_json = _oat_json(s["db"], validation=s["train"][:2])
    oat_json["database"][s["test"][0]]["annotations"].pop()
    return hr_root, s["root"](json_db=oat_json), extra


@pytest.mark.parametrize("lacp", [True, False], ids=["with-points", "no-points"])
def test_both_layouts_into_one_folder_either_order(oat_setup, lacp):
    s = oat_setup
    hr_root, oat_root, extra = _merge_roots(s)
    hr = {} if lacp else {"points": False}
    out_a, out_b = s["tmp"] / "a", s["tmp"] / "b"
    import_layout("hrpro", hr_root, out_a, features_for="teacher", progress=False, **hr)
    inode = (out_a / "features" / f"{s['train'][0]}.npy").stat().st_ino
    summary_a = import_layout("oat", oat_root, out_a, features_for="student", progress=False)
    import_layout("oat", oat_root, out_b, features_for="student", progress=False)
    summary_b = import_layout("hrpro", hr_root, out_b, features_for="teacher", progress=False, **hr)

    assert summary_a["merged"] and summary_b["merged"]
    assert sorted(summary_a["skipped"]["merge_only_in_existing"]) == sorted(extra)
    assert sorted(summary_b["skipped"]["merge_only_in_this_import"]) == sorted(extra)
    a, b = load_dataset(out_a), load_dataset(out_b)
    for name in ("videos", "segments") + (("points",) if lacp else ()):
        pd.testing.assert_frame_equal(getattr(a, name).sort_values(list(getattr(a, name).columns)).reset_index(drop=True),
                                      getattr(b, name).sort_values(list(getattr(b, name).columns)).reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_parquet(out_a / "ambiguous.parquet"), pd.read_parquet(out_b / "ambiguous.parquet"))
    assert a.classes == b.classes and len(a.classes) == 20
    assert sorted(a.videos.video_id) == sorted(s["train"] + s["test"])
    assert a.has_teacher_features and a.meta["feature_dim"] == 4096 and a.meta["teacher_feature_dim"] == 2048
    assert a.meta["features"]["layout"] == "oat" and a.meta["teacher_features"]["layout"] == "hrpro"
    # Each video carries both step counts, at the two feature rates.
    for row in a.videos.itertuples():
        assert row.n_steps == int(round(row.duration * 4)) and row.teacher_n_steps == _i3d_steps(row.duration)
        assert a.features(row.video_id).shape == (row.n_steps, 4096)
        assert a.teacher_features(row.video_id).shape == (row.teacher_n_steps, 2048)
    # The tables come from the import with points, else from the teacher's: HR-Pro's either way here.
    assert len(a.segments) == sum(len(s["db"][v]["annotations"]) for v in s["train"] + s["test"])
    if lacp:   # LACP points survive the merge, whichever import came first
        assert len(a.points) == sum(1 for r in s["thumos"]["points"] if r["video_id"] in set(s["train"]))
    else:
        assert a.points is None and b.points is None
    assert (out_a / "teacher_features" / f"{s['train'][0]}.npy").stat().st_ino == inode   # linked, not copied


@pytest.mark.parametrize("problem", ["duration", "nan"])
def test_failed_merge_leaves_the_folder_unchanged(oat_setup, problem):
    """Refused before writing (durations disagree) or midway, after some files were linked (NaN)."""
    s = oat_setup
    hr_root, _, _ = _merge_roots(s)
    out = s["tmp"] / "out"
    import_layout("hrpro", hr_root, out, features_for="teacher", progress=False)
    before = _snapshot(out)
    parquet = (out / "videos.parquet").read_bytes()
    if problem == "duration":
        video = s["test"][0]
        shifted = _oat_json(s["db"])
        shifted["database"][video]["duration"] += 60.0
        oat_root = s["root"](name="oat_bad", json_db=shifted)
        where, what = oat_root / "thumos14_v2.json", "disagrees"
    else:
        video = sorted(s["train"])[-1]           # imported after the others were linked
        oat_root = s["root"](name="oat_bad")
        with open(oat_root / "thumos_all_feature_val_V3.pickle", "rb") as handle:
            table = pickle.load(handle)
        table[video]["flow"][2, 5] = np.inf
        with open(oat_root / "thumos_all_feature_val_V3.pickle", "wb") as handle:
            pickle.dump(table, handle)
        where, what = oat_root / "thumos_all_feature_val_V3.pickle", "inf"
    _expect_error(lambda: import_layout("oat", oat_root, out, features_for="student", progress=False),
                  where, video, what)
    assert _snapshot(out) == before and (out / "videos.parquet").read_bytes() == parquet
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".out.")]
    assert not load_dataset(out).has_teacher_features


# ---------------------------------------------------------------------------------------------
# EGTEA (HAT layout) and the generic `database` layout


@pytest.fixture(scope="module")
def egtea_database():
    _need(EGTEA / "egtea_annotations_split1.json")
    return json.loads((EGTEA / "egtea_annotations_split1.json").read_text())["database"]


def test_egtea_split1(egtea_database, tmp_path):
    root = tmp_path / "egtea"
    (root / "I3D").mkdir(parents=True)
    os.symlink(EGTEA / "egtea_annotations_split1.json", root / "egtea_annotations_split1.json")
    short_flow = sorted(egtea_database)[0]
    for video_id, entry in egtea_database.items():
        n = int(round(entry["duration"] * 2))
        # Real I3D streams are 1024-d each; 8 keeps the 86 files small (the importer checks consistency,
        # not a particular width). One flow stream is a step short, as extracted streams sometimes are.
        rgb = np.full((n, 8), 0.5, np.float32)
        flow = np.full((n - (video_id == short_flow), 8), -0.5, np.float32)
        np.savez(root / "I3D" / f"{video_id}.npz", rgb=rgb, flow=flow)
    summary = import_layout("hat", root, tmp_path / "out", split=1, progress=False)
    ds = load_dataset(tmp_path / "out")
    subsets = ds.videos.subset
    assert subsets.isin(["train", "val"]).sum() == 64 and (subsets == "test").sum() == 22
    assert (subsets == "val").sum() == round(64 * 0.1)
    labels = sorted({a["label"] for e in egtea_database.values() for a in e["annotations"]})
    assert ds.classes == labels and len(ds.classes) == 22
    assert len(ds.segments) == sum(len(e["annotations"]) for e in egtea_database.values())
    assert ds.points is None and summary["warnings"]["stream_length_mismatch"] == 1
    features = ds.features(short_flow)
    assert features.shape == (int(round(egtea_database[short_flow]["duration"] * 2)) - 1, 16)
    assert (features[:, :8] == 0.5).all() and (features[:, 8:] == -0.5).all()


def _database_root(root, entries, rate, dim=6, fmt="npy"):
    (root / "feats").mkdir(parents=True)
    (root / "ann.json").write_text(json.dumps({"database": entries}))
    for video_id, entry in entries.items():
        n = int(round(entry["duration"] * rate))
        if fmt == "npy":
            np.save(root / "feats" / f"{video_id}.npy", np.ones((n, dim), np.float32))
    return root


GENERIC = {
    "k1": {"subset": "training", "duration": 40.0, "annotations": [{"segment": [1.0, 5.0], "label": "open"}]},
    "k2": {"subset": "train", "duration": 30.0, "annotations": []},
    "k3": {"subset": "validation", "duration": 20.0, "annotations": [{"segment": [2.0, 4.0], "label": "close"}]},
    "k4": {"subset": "test", "duration": 50.0, "annotations": [{"segment": [10.0, 60.0], "label": "open"}]},
}


def test_generic_database_layout(tmp_path):
    """HOI4D-O and other datasets: the `database` JSON with one .npy per video at an unknown rate."""
    root = _database_root(tmp_path / "db", GENERIC, rate=3.0)
    summary = import_layout("hat", root, tmp_path / "out", annotations=root / "ann.json",
                            features_dir=root / "feats", step_rate="auto", progress=False)
    ds = load_dataset(tmp_path / "out")
    assert dict(zip(ds.videos.video_id, ds.videos.subset)) == {"k1": "train", "k2": "train", "k3": "val", "k4": "test"}
    assert summary["warnings"]["no_annotations"] == 1 and "k2" in set(ds.videos.video_id)
    assert summary["warnings"]["segments_clipped"] == 1
    assert ds.segments[ds.segments.video_id == "k4"].end.item() == 50.0
    assert ds.meta["steps_per_second"] == pytest.approx(3.0)
    assert ds.classes == ["close", "open"]


def test_generic_wrong_rate_and_bad_subset(tmp_path):
    root = _database_root(tmp_path / "db", GENERIC, rate=3.0)
    out = tmp_path / "out"
    # The EGTEA rate (2 steps/s) does not fit features at 3 steps/s: the first video is named.
    _expect_error(lambda: import_layout("hat", root, out, annotations=root / "ann.json",
                                        features_dir=root / "feats", progress=False),
                  root / "feats" / "k1.npy", "k1", "steps")
    _no_leftovers(out)
    bad = dict(GENERIC, k5={"subset": "holdout", "duration": 10.0, "annotations": []})
    (root / "ann.json").write_text(json.dumps({"database": bad}))
    _expect_error(lambda: import_layout("hat", root, out, annotations=root / "ann.json",
                                        features_dir=root / "feats", step_rate="auto", progress=False),
                  root / "ann.json", "k5", "holdout")
    _no_leftovers(out)


# ---------------------------------------------------------------------------------------------
# `onpoint import` on hostile or unusual files (issue 12), through the real command, on small files

ELSEWHERE = "../../elsewhere/x"


def _import(*args):
    from click.testing import CliRunner

    from onpoint_core.cli import main

    return CliRunner().invoke(main, ["import", *map(str, args)])


def _one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    return lines[0]


def _entry(subset, duration=20.0, label="open"):
    return {"subset": subset, "duration": duration, "fps": 30.0,
            "annotations": [{"segment": [2.0, 6.0], "label": label}]}


def _hrpro_with(root, bad):
    """HR-Pro layout whose split_train.txt and gt_full.json list `bad`; its features sit where the
    path of features/train/<bad>.npy really points."""
    database = {"v1": _entry("Validation"), "t1": _entry("Test"), bad: _entry("Validation")}
    (root / "point_labels").mkdir(parents=True)
    (root / "gt_full.json").write_text(json.dumps({"database": database}))
    (root / "split_train.txt").write_text(f"v1\n{bad}\n")
    (root / "split_test.txt").write_text("t1\n")
    (root / "point_labels" / "point_gaussian.csv").write_text("class,video_id,point\nopen,v1,90\n")
    for video_id, folder in (("v1", "train"), ("t1", "test"), (bad, "train")):
        path = root / "features" / folder / f"{video_id}.npy"
        (root / "features" / folder).mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.ones((_i3d_steps(20.0), 8), np.float32))
    return root / "gt_full.json"


def _oat_with(root, bad):
    database = {"v1": _entry("train"), "t1": _entry("test"), bad: _entry("train")}
    root.mkdir(parents=True)
    (root / "thumos14_v2.json").write_text(json.dumps({"database": database}))
    rows = {"rgb": np.ones((80, 4), np.float32), "flow": np.ones((80, 4), np.float32)}
    for name, ids in (("thumos_all_feature_val_V3.pickle", ["v1", bad]), ("thumos_all_feature_test_V3.pickle", ["t1"])):
        with open(root / name, "wb") as handle:
            pickle.dump({video_id: rows for video_id in ids}, handle)
    return root / "thumos14_v2.json"


def _hat_with(root, bad, database=None):
    database = database or {"v1": _entry("train"), "t1": _entry("test"), bad: _entry("train")}
    (root / "I3D").mkdir(parents=True)
    (root / "egtea_annotations_split1.json").write_text(json.dumps({"database": database}))
    for video_id in database:
        path = root / "I3D" / f"{video_id}.npz"
        if len(path.name) < 250:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, rgb=np.ones((40, 4), np.float32), flow=np.ones((40, 4), np.float32))
    return root / "egtea_annotations_split1.json"


@pytest.mark.parametrize("layout, bad", [(layout, bad) for layout in ("hrpro", "oat", "hat")
                                         for bad in (ELSEWHERE, "ABSOLUTE")])
def test_every_importer_refuses_a_traversal_video_id(tmp_path, layout, bad):
    """Guard: an id that is a path would read and write outside ROOT and OUT. Removing the importers'
    check left the suite green; this names the annotation file (the writer's own check names OUT)."""
    bad = str(tmp_path / "abs" / "x") if bad == "ABSOLUTE" else bad
    root = tmp_path / "in" / "root"
    ann = {"hrpro": _hrpro_with, "oat": _oat_with, "hat": _hat_with}[layout](root, bad)
    inputs = sorted(tmp_path.rglob("*.np*"))
    out = tmp_path / "work" / "deep" / "out"
    _one_line_error(_import(layout, root, out), ann, bad, "file name")
    assert sorted(tmp_path.rglob("*.np*")) == inputs and not (tmp_path / "work").exists()


def test_import_refuses_a_300_character_video_id(tmp_path):
    """It failed deep in the file system (OSError: File name too long) with a traceback."""
    long_id = "v" * 300
    ann = _hat_with(tmp_path / "root", None, {"v1": _entry("train"), "t1": _entry("test"), long_id: _entry("train")})
    _one_line_error(_import("hat", tmp_path / "root", tmp_path / "out"), ann, "300 bytes")
    _no_leftovers(tmp_path / "out")


def test_import_refuses_a_video_listed_twice(tmp_path):
    """JSON keeps the last of two equal keys: the training video v1 silently became a test video."""
    ann = _hat_with(tmp_path / "root", None, {"v1": _entry("train"), "t1": _entry("test")})
    text = json.dumps({"database": {"v1": _entry("train"), "t1": _entry("test")}})
    ann.write_text(text[:-2] + ', "v1": ' + json.dumps(_entry("test")) + "}}")
    _one_line_error(_import("hat", tmp_path / "root", tmp_path / "out"), ann, "v1", "twice", "'train'", "'test'")
    _no_leftovers(tmp_path / "out")


def test_hrpro_split_files_decide_the_subset(tmp_path):
    """HR-Pro's loader reads train/test from the split files only; GTEA or BEOID in the same layout
    spell the JSON subset otherwise. A disagreeing or unknown JSON subset is a counted warning."""
    folder = write_small_thumos(tmp_path / "ann", n_train=4, n_test=2)
    thumos = _parsed(folder)
    database = thumos["db"]
    database[thumos["train"][0]]["subset"] = "Test"            # disagrees with split_train.txt
    database[thumos["test"][0]]["subset"] = "S2_Cheese"        # a name no layout knows
    (folder / "gt_full.json").write_text(json.dumps({"database": database}))
    root = _hrpro_root(tmp_path / "root", thumos, thumos["train"] + thumos["test"], thumos["train"], thumos["test"])
    result = _import("hrpro", root, tmp_path / "out", "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["warnings"]["subset_disagrees_with_split"] == 2
    ds = load_dataset(tmp_path / "out")
    subsets = dict(zip(ds.videos.video_id, ds.videos.subset))
    assert subsets[thumos["train"][0]] == "train" and subsets[thumos["test"][0]] == "test"


def _actionformer_thumos(root):
    """An ActionFormer-style THUMOS file: subsets Validation / Test, under a name of its own."""
    database = {f"video_validation_{i}": _entry("Validation") for i in range(4)}
    database |= {f"video_test_{i}": _entry("Test") for i in range(2)}
    (root / "feats").mkdir(parents=True)
    for video_id in database:
        np.save(root / "feats" / f"{video_id}.npy", np.ones((40, 4), np.float32))
    (root / "thumos14.json").write_text(json.dumps({"database": database}))
    return root / "thumos14.json"


def test_import_without_training_videos_is_an_error_and_subset_map_fixes_it(tmp_path):
    """The hat layout reads 'Validation' as val: 'train 0' with exit 0. Now an error with the fix."""
    ann = _actionformer_thumos(tmp_path / "root")
    args = ["hat", tmp_path / "root", tmp_path / "out", "--annotations", ann, "--features-dir", tmp_path / "root" / "feats"]
    _one_line_error(_import(*args), ann, "no train videos", "--subset-map Validation=train")
    _no_leftovers(tmp_path / "out")
    result = _import(*args, "--subset-map", "Validation=train", "--val-fraction", "0.25")
    assert result.exit_code == 0, result.output
    counts = load_dataset(tmp_path / "out").videos.subset.value_counts().to_dict()
    assert counts == {"train": 3, "val": 1, "test": 2}
    # a file without test videos is refused the same way
    database = json.loads(ann.read_text())["database"]
    ann.write_text(json.dumps({"database": {v: e for v, e in database.items() if "test" not in v}}))
    _one_line_error(_import(*args, "--subset-map", "Validation=train"), ann, "no test videos")
    _one_line_error(_import(*args, "--subset-map", "Validation=holdout"), "holdout", "train, val, test")


def _killed_import(args, at):
    """Run `onpoint import ARGS` in a child that kills itself with SIGKILL `at` a point of the write:
    "video" (after the first feature file) or "swap" (OUT moved aside, the new folder not yet in place)."""
    import subprocess
    import sys

    code = f"""
import os, signal, sys
from pathlib import Path
import onpoint_core.data.dataset as dataset, onpoint_core.io as io
if {at!r} == "video":
    original = dataset.DatasetWriter.add_video
    def add_video(self, *a, **k):
        original(self, *a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    dataset.DatasetWriter.add_video = add_video
else:
    replace = os.replace
    def killing_replace(src, dst):
        if Path(src).name.startswith("." + Path(dst).name + ".tmp-") and Path(src).is_dir():
            os.kill(os.getpid(), signal.SIGKILL)
        replace(src, dst)
    io.os = type("os", (), {{**{{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}}, "replace": staticmethod(killing_replace)}})
from onpoint_core.cli import main
main({[str(a) for a in args]!r})
"""
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr


def test_a_killed_import_leaves_nothing_behind_after_the_next_one(tmp_path):
    """kill -9 skips every cleanup: the temporary folder stayed forever (many GB for THUMOS)."""
    ann = _actionformer_thumos(tmp_path / "root")
    out = tmp_path / "imported" / "out"
    args = ["import", "hat", tmp_path / "root", out, "--annotations", ann, "--features-dir", tmp_path / "root" / "feats",
            "--subset-map", "Validation=train"]
    _killed_import(args, "video")
    assert [p.name.split("-")[0] for p in out.parent.iterdir()] == [".out.tmp"] and not out.exists()
    result = _import(*args[1:])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.parent.iterdir()] == ["out"]


def test_a_kill_during_the_swap_loses_no_dataset(oat_setup):
    """Killed between moving the old OUT aside and renaming the new one in: OUT was gone and the
    teacher import sat in a hidden .out.old-* folder; the next merge started from nothing."""
    s = oat_setup
    hr_root, oat_root, _ = _merge_roots(s)
    out = s["tmp"] / "merged"
    import_layout("hrpro", hr_root, out, features_for="teacher", progress=False)
    _killed_import(["import", "oat", oat_root, out, "--features-for", "student"], "swap")
    assert not out.exists()
    result = _import("oat", oat_root, out, "--features-for", "student")
    assert result.exit_code == 0, result.output
    ds = load_dataset(out)
    assert ds.has_teacher_features and ds.meta["teacher_features"]["layout"] == "hrpro"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".merged.")]


def test_dvc_ignores_the_temporary_folders_of_an_import():
    """.gitignore had *.tmp-*, .dvcignore did not: a leftover under data/imported/ changed the stage."""
    import shutil
    import subprocess

    from tests.conftest import REPO_ROOT

    dvc = shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not installed")
    paths = ["data/imported/.thumos14.tmp-4242-abcd/features/video_test_0000004.npy", "data/imported/.thumos14.old-4242"]
    result = subprocess.run([dvc, "check-ignore", *paths], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split() == paths, result.stdout + result.stderr

"""The anticipation targets come from a teacher probability that can reach 0.5.

HR-Pro's fused CAS `sigmoid(class) * (1 - bkg)` stays far below 0.5 by construction, so
binarising it at 0.5 trains the anticipation head on targets that are almost never positive.
The teachers therefore also return per-class scores (TeacherOutput.class_prob): HR-Pro's fused
CAS min-max normalised over the video, TSASPC's softmax action columns. The cache stores them, and the student's
future targets read them, never the CAS.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from onpoint_core.config import HRProTrain, TSASPCTrain, build
from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import generate_synthetic
from onpoint_core.errors import OnPointError
from onpoint_core.student.inputs import student_videos
from onpoint_core.student.targets import future_targets
from onpoint_core.student.variants import RUNS
from onpoint_core.student.windows import WindowData
from onpoint_core.teachers.hrpro import HRProTeacher
from onpoint_core.teachers.tsaspc import TSASPCTeacher
from tests.conftest import tiny_synthetic

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
C, D = 3, 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features(seed, lengths=(40, 25)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, D)).astype(np.float32) for n in lengths]


def test_hrpro_class_probabilities_are_the_fused_cas_normalised_over_the_video():
    cfg = build(HRProTrain, {**RAW["hrpro"]["train"], **RAW["hrpro"]["recipes"]["cpu"], "embed_dim": 32},
                "params.yaml", "hrpro.train")
    teacher = HRProTeacher(C, D, cfg)
    for out, cas in zip(teacher.predict_batch(_features(1), 2), teacher.predict_cas_batch(_features(1), 2)):
        np.testing.assert_array_equal(out.cas, cas)
        actions = out.cas[:, :-1]
        assert actions.max() < 0.5 and out.class_prob.shape == actions.shape   # the fused CAS never reaches 0.5 ...
        np.testing.assert_allclose(out.class_prob, (actions - actions.min()) / (actions.max() - actions.min()),
                                   rtol=1e-5, atol=1e-6)
        assert out.class_prob.max() == pytest.approx(1.0) and out.class_prob.min() == pytest.approx(0.0)
    # a flat CAS has nothing ahead anywhere
    from onpoint_core.teachers.hrpro.teacher import class_probabilities
    np.testing.assert_array_equal(class_probabilities(np.full((5, C + 1), 0.2, np.float32)), 0.0)


def test_tsaspc_class_probabilities_are_the_softmax_action_columns():
    cfg = build(TSASPCTrain, {**RAW["tsaspc"]["train"], **RAW["tsaspc"]["recipes"]["cpu"], "feature_dim": 24,
                              "layers": 3, "stages": 2}, "params.yaml", "tsaspc.train")
    teacher = TSASPCTeacher(C, D, cfg)
    for out in teacher.predict_batch(_features(2), 2):
        np.testing.assert_array_equal(out.class_prob, out.cas[:, :-1])
        np.testing.assert_allclose(out.cas.sum(1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def cache_world(tmp_path_factory):
    """A tiny real dataset and a teacher cache whose CAS never reaches 0.5 while the class
    probabilities do, inside the first GT segment of each training video (as HR-Pro's fused CAS)."""
    root = tmp_path_factory.mktemp("anticipation")
    generate_synthetic(tiny_synthetic(RAW, num_train_videos=4, num_test_videos=1, video_seconds=[20, 30],
                                      stream_dim=8, num_classes=C, confusable_pairs=1),
                       root / "dataset", progress=False)
    dataset = load_dataset(root / "dataset")
    for folder in ("cas", "class_prob"):
        (root / "teacher" / folder).mkdir(parents=True)
    for video_id in dataset.video_ids():
        n = dataset.video(video_id)["n_steps"]
        prob = np.full((n, C), 0.1, np.float32)
        segment = dataset.segments_of(video_id).iloc[0]
        rate = n / dataset.video(video_id)["duration"]
        prob[int(segment.start * rate):int(np.ceil(segment.end * rate)), dataset.classes.index(segment.label)] = 0.9
        bkg = np.full((n, 1), 0.6, np.float32)
        np.save(root / "teacher" / "cas" / f"{video_id}.npy", np.concatenate([prob * (1 - bkg), bkg], 1))
        np.save(root / "teacher" / "class_prob" / f"{video_id}.npy", prob)
    return root, dataset


def test_student_future_targets_come_from_the_cached_class_probabilities(cache_world):
    root, dataset = cache_world
    videos = student_videos(dataset, ("train",), RUNS["onpoint"], teacher_cache=root / "teacher",
                            points=_no_points(), pseudo=_no_pseudo())
    assert videos and all(v.teacher_cas[:, :-1].max() < 0.5 for v in videos)   # the fused CAS: never
    data = WindowData(videos, C, window=8, anchors=(2, 4, 8), anticipation=4)
    future = data.targets["future"].numpy()
    want = np.concatenate([future_targets(v.teacher_class_prob, 4) for v in videos])
    np.testing.assert_array_equal(future, want)
    assert future.any(axis=1).mean() > 0.05          # several percent of windows see an action ahead


def test_a_cache_without_class_probabilities_is_refused_naming_the_file(cache_world, tmp_path):
    root, dataset = cache_world
    (tmp_path / "cas").symlink_to(root / "teacher" / "cas")
    with pytest.raises(OnPointError, match=r"class_prob.*class probabilities missing \(run the teacher_cache stage\)"):
        student_videos(dataset, ("train",), RUNS["onpoint"], teacher_cache=tmp_path, points=_no_points(),
                       pseudo=_no_pseudo())


def _no_points():
    import pandas as pd
    return pd.DataFrame({"video_id": pd.Series(dtype=object), "label": pd.Series(dtype=object),
                         "time": pd.Series(dtype=float)})


def _no_pseudo():
    import pandas as pd
    return pd.DataFrame({"video_id": pd.Series(dtype=object), "label": pd.Series(dtype=object),
                         "start": pd.Series(dtype=float), "end": pd.Series(dtype=float)})

"""params.yaml validation: the shipped file resolves; each wrong value stops naming its key."""

import pytest
import yaml

from onpoint_core.config import ParamsError, load_params, resolve_params


def test_shipped_params_hold_the_paper_table():
    for name, window, anchors, horizon, gamma, teacher in [
        ("thumos14", 64, [4, 8, 16, 32, 48, 64], 16, 1.0, "hrpro"),
        ("egtea", 24, [2, 4, 6, 8, 12, 16, 24], 12, 0.8, "tsaspc"),
        ("hoi4d", 56, [4, 8, 16, 24, 48, 56], 16, 0.8, "tsaspc"),
    ]:
        cfg = load_params(dataset=name)
        data = cfg["data"]
        assert (data["window"], data["anchors"], data["anticipation"], data["gamma"], data["teacher"]) == \
            (window, anchors, horizon, gamma, teacher)
        assert data["num_anchors"] == len(anchors)
        assert cfg["student"]["d_model"] == 1024 and cfg["student"]["batch_size"] == 128


def test_default_dataset_is_the_synthetic_benchmark_with_cpu_overrides(raw_params):
    cfg = load_params()
    assert cfg["dataset"] == "synthetic" and cfg["data"]["source"] == "synthetic"
    assert cfg["synthetic"]["profile"] == "sparse"
    # overrides apply to this dataset only; the paper value stays for real datasets
    assert cfg["hrpro"]["iterations"] != raw_params["hrpro"]["iterations"]
    assert load_params(dataset="thumos14")["hrpro"]["iterations"] == raw_params["hrpro"]["iterations"]
    # nested override: only the L1 scale of L_ins changes, alpha/beta/delta stay the shared ones
    weights = cfg["student"]["loss_weights"]
    assert weights["regression"] < raw_params["student"]["loss_weights"]["regression"] == 1.0
    assert {k: weights[k] for k in ("alpha", "beta", "delta")} == \
        {k: raw_params["student"]["loss_weights"][k] for k in ("alpha", "beta", "delta")}
    assert load_params(dataset="thumos14")["student"]["loss_weights"] == raw_params["student"]["loss_weights"]


@pytest.mark.parametrize("edit, key", [
    (lambda p: p["datasets"]["synthetic"].update(window=0), "datasets.synthetic.window"),
    (lambda p: p["datasets"]["synthetic"].update(window=-3), "datasets.synthetic.window"),
    (lambda p: p["datasets"]["synthetic"].update(window=32), "datasets.synthetic.anchors[4]"),
    (lambda p: p.update(dataset="kinetics"), "dataset"),
    (lambda p: p["datasets"]["synthetic"].update(teacher="actionformer"), "datasets.synthetic.teacher"),
    (lambda p: p["datasets"]["synthetic"].update(num_anchors=5), "datasets.synthetic.num_anchors"),
    (lambda p: p["datasets"]["synthetic"].update(anchors=[8, 4, 16, 32, 48, 64]), "datasets.synthetic.anchors"),
    (lambda p: p["datasets"]["synthetic"]["overrides"].update(hrpro={"iteratons": 3}),
     "datasets.synthetic.overrides.hrpro.iteratons"),
    (lambda p: p["synthetic"]["sparse"].update(noise=-1), "synthetic.sparse.noise"),
    (lambda p: p["synthetic"]["sparse"].update(smoothness=1.0), "synthetic.sparse.smoothness"),
    (lambda p: p["synthetic"]["sparse"].update(video_seconds=[90, 30]), "synthetic.sparse.video_seconds"),
    (lambda p: p["student"].update(encoder_heads=7), "student.d_model"),
    (lambda p: p["datasets"]["synthetic"]["overrides"]["student"].pop("loss_weights")
     and p["student"]["loss_weights"].update(regression=-0.1), "student.loss_weights.regression"),
    (lambda p: p["datasets"]["synthetic"]["overrides"]["student"]["loss_weights"].update(regression="big"),
     "student.loss_weights.regression"),
    (lambda p: p.update(dataset="thumos14") or p["datasets"]["thumos14"].update(source="/elsewhere/thumos"),
     "datasets.thumos14.source"),
])
def test_wrong_value_names_its_key(raw_params, edit, key):
    edit(raw_params)
    with pytest.raises(ParamsError) as info:
        resolve_params(raw_params, "params.yaml")
    assert f"params.yaml: {key}:" in str(info.value)


def test_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nothere.yaml: file not found"):
        load_params(tmp_path / "nothere.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    with pytest.raises(ParamsError, match="broken.yaml: not valid YAML"):
        load_params(broken)


def test_params_round_trip_through_yaml(raw_params, tmp_path):
    path = tmp_path / "params.yaml"
    raw_params["dataset"] = "synthetic_dense"
    path.write_text(yaml.safe_dump(raw_params))
    cfg = load_params(path)
    assert cfg["data"]["teacher"] == "tsaspc" and cfg["synthetic"]["profile"] == "dense"

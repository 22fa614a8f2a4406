"""params.yaml validation: the shipped file resolves; each wrong value stops naming its key."""

import pytest
import yaml

from onpoint_core.config import ParamsError, load_params, resolve_params


def test_shipped_params_hold_the_paper_table():
    for name, window, anchors, horizon, gamma in [
        ("thumos14", 64, (4, 8, 16, 32, 48, 64), 16, 1.0),
        ("egtea", 24, (2, 4, 6, 8, 12, 16, 24), 12, 0.8),
        ("hoi4d", 56, (4, 8, 16, 24, 48, 56), 16, 0.8),
    ]:
        data = load_params(dataset=name).data
        assert (data.window, data.anchors, data.anticipation, data.gamma) == (window, anchors, horizon, gamma)
        assert data.num_anchors == len(anchors)
    paper = load_params(recipe="paper")
    assert (paper.student.d_model, paper.student.ffn_dim, paper.student.decoder_layers) == (1024, 2048, 5)
    assert (paper.student.lr, paper.student.batch_size, paper.student.loss_weights.regression) == (1e-4, 128, 1.0)
    assert (paper.teacher_train.iterations, paper.teacher_train.embed_dim) == (1000, 2048)
    assert load_params(recipe="paper", teacher="tsaspc").teacher_train.epochs == 70


def test_default_is_the_synthetic_benchmark_on_the_cpu_recipe(raw_params):
    cfg = load_params()
    assert (cfg.dataset_name, cfg.teacher, cfg.recipe) == ("synthetic", "hrpro", "cpu")
    assert cfg.data.source == "synthetic" and cfg.data.generator.profile == "sparse"
    assert cfg.teacher_train.iterations == raw_params["hrpro"]["recipes"]["cpu"]["iterations"]
    # the recipe's nested key joins the shared ones: regression from the recipe, alpha/beta/delta shared
    weights = cfg.student.loss_weights
    assert weights.regression == raw_params["student"]["recipes"]["cpu"]["loss_weights"]["regression"]
    assert (weights.alpha, weights.beta, weights.delta) == tuple(raw_params["student"]["loss_weights"][k]
                                                                 for k in ("alpha", "beta", "delta"))


@pytest.mark.parametrize("edit, key", [
    (lambda p: p["datasets"]["synthetic"].update(window=0), "datasets.synthetic.window"),
    (lambda p: p["datasets"]["synthetic"].update(window=-3), "datasets.synthetic.window"),
    (lambda p: p["datasets"]["synthetic"].update(window=32), "datasets.synthetic.anchors[4]"),
    (lambda p: p.update(dataset="kinetics"), "dataset"),
    (lambda p: p.update(teacher="actionformer"), "teacher"),
    (lambda p: p["datasets"]["synthetic"].update(num_anchors=5), "datasets.synthetic.num_anchors"),
    (lambda p: p["datasets"]["synthetic"].update(anchors=[8, 4, 16, 32, 48, 64]), "datasets.synthetic.anchors"),
    (lambda p: p["hrpro"]["recipes"]["cpu"].update(iteratons=3), "hrpro.recipes.cpu"),
    (lambda p: p["datasets"]["synthetic"]["generator"].update(noise=-1), "datasets.synthetic.generator.noise"),
    (lambda p: p["datasets"]["synthetic"]["generator"].update(smoothness=1.0),
     "datasets.synthetic.generator.smoothness"),
    (lambda p: p["datasets"]["synthetic"]["generator"].update(video_seconds=[90, 30]),
     "datasets.synthetic.generator.video_seconds"),
    (lambda p: p["student"].update(encoder_heads=7), "student.recipes.cpu.d_model"),
    (lambda p: p["student"]["recipes"]["cpu"]["loss_weights"].update(regression=-0.1),
     "student.recipes.cpu.loss_weights.regression"),
    (lambda p: p["student"]["recipes"]["cpu"]["loss_weights"].update(regression="big"),
     "student.recipes.cpu.loss_weights.regression"),
    (lambda p: p["student"]["recipes"]["cpu"].update(lr="abc"), "student.recipes.cpu.lr"),
    (lambda p: p["datasets"]["thumos14"].update(source="/elsewhere/thumos"), "datasets.thumos14.source"),
    (lambda p: p["hrpro"]["train"].update(instance_refinement=True), "hrpro.train.instance_refinement"),
    (lambda p: p["hrpro"]["train"].update(heads=7), "hrpro.recipes.cpu.embed_dim"),
    (lambda p: p["hrpro"]["proposals"].update(cas_thresholds=[0.2, 0.1, 0.05]), "hrpro.proposals.cas_thresholds"),
    (lambda p: p["hrpro"]["detect"].update(predict_batch=0), "hrpro.detect.predict_batch"),
    (lambda p: p["student"].update(processes=3), "student.recipes.cpu.batch_size"),
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
    raw_params.update(dataset="synthetic_dense", teacher="tsaspc")
    path.write_text(yaml.safe_dump(raw_params))
    cfg = load_params(path)
    assert cfg.teacher == "tsaspc" and cfg.data.generator.profile == "dense"
    assert cfg.teacher_train.background_stamps is True

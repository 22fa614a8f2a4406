"""The key a user sets is the key that runs (onpoint_core/config.py, dvc.yaml).

* every leaf key of params.yaml, changed, changes the resolved objects of a stage that reads it
  (under some choice of dataset, teacher and recipe), or is refused naming that key;
* a change never reaches a stage that does not declare the key (no hidden reads);
* dvc.yaml declares, per stage, exactly the keys of config.STAGE_KEYS and, as code deps, exactly
  the stage script and the onpoint_core modules it imports (transitively);
* `onpoint params --stage` prints the same keys, resolved.
"""

import copy
import itertools
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from onpoint_core import config
from onpoint_core.cli import main as cli
from scripts.sync_dvc_deps import import_closure

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def leaves(tree, prefix=""):
    """(dotted path, value) of every leaf; an empty mapping is a leaf of its own."""
    for name, value in tree.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            yield from leaves(value, path + ".")
        else:
            yield path, value


def set_leaf(raw, dotted, value):
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def perturbed(dotted, value, raw):
    """A different value of the same kind (it may well be refused: that is allowed)."""
    if dotted == "dataset":
        return next(name for name in raw["datasets"] if name != value)
    if dotted == "teacher":
        return "tsaspc" if value == "hrpro" else "hrpro"
    if dotted == "recipe":
        return "paper" if value == "cpu" else "cpu"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.05
    if isinstance(value, list):
        first = value[0]
        return [(first * 0.5 or 0.05) if isinstance(first, float) else max(first - 1, 1)] + value[1:]
    if isinstance(value, dict):            # an empty section: a key it does not know
        return {"extra": 1}
    if value is None:
        return 3
    if value == "auto":
        return 0.7
    if value == "synthetic":
        return "data/imported/elsewhere"
    if isinstance(value, str) and value.startswith("data/imported/"):
        return value + "_other"
    if value in ("sparse", "dense"):
        return "dense" if value == "sparse" else "sparse"
    if value == "gaussian":
        return "dataset"
    if value == "dataset":
        return "gaussian"
    if dotted == "student.run":
        return "teacher_oat"
    if value in ("point_anchored", "runs"):
        return "runs" if value == "point_anchored" else "point_anchored"
    if value in config.PRECISIONS:
        return "bf16" if value == "fp32" else "fp32"
    raise AssertionError(f"no perturbation for {dotted}={value!r}")


SELECTIONS = list(itertools.product(RAW["datasets"], config.TEACHERS, sorted(RAW["student"]["recipes"])))


def selected(raw, dataset, teacher, recipe):
    out = copy.deepcopy(raw)
    out.update(dataset=dataset, teacher=teacher, recipe=recipe)
    return out


def stage_objects(raw):
    params = config.resolve_params(raw)
    return {stage: make(params) for stage, make in config.STAGE_OBJECTS.items()}


def declared(raw, stage):
    return config.stage_key_paths(raw, stage)


def reads(raw, stage, dotted):
    """Does `stage` declare `dotted` (or a section containing it) under raw's selectors?"""
    return any(dotted == key or dotted.startswith(key + ".") for key in declared(raw, stage))


@pytest.mark.parametrize("dotted,value", list(leaves(RAW)), ids=[k for k, _ in leaves(RAW)])
def test_every_leaf_key_takes_effect_or_is_refused(dotted, value):
    took_effect = False
    for selection in SELECTIONS:
        base = selected(RAW, *selection)
        if dotted in ("dataset", "teacher", "recipe"):
            base = copy.deepcopy(RAW)
        before = stage_objects(base)
        changed = copy.deepcopy(base)
        set_leaf(changed, dotted, perturbed(dotted, value, base))
        try:
            after = stage_objects(changed)
        except config.ParamsError as exc:
            stem = dotted.split("[")[0]
            assert stem in str(exc) or dotted.rsplit(".", 1)[0] in str(exc), \
                f"refusing {dotted} must name it, got: {exc}"
            took_effect = True
            continue
        for stage in config.STAGES:
            if before[stage] != after[stage]:
                # a changed stage must declare the key (no hidden reads); selectors re-point paths
                assert dotted in ("dataset", "teacher", "recipe") or reads(base, stage, dotted), \
                    f"{dotted} changed stage {stage}, which does not declare it"
                took_effect = True
        if took_effect and dotted in ("dataset", "teacher", "recipe"):
            break
    assert took_effect, f"{dotted}: changing it changes no stage under any dataset/teacher/recipe"


def test_a_key_in_both_shared_part_and_recipe_is_refused():
    raw = copy.deepcopy(RAW)
    raw["student"]["lr"] = 5e-4
    with pytest.raises(config.ParamsError, match=r"student\.lr: is also set by student\.recipes\.\w+\.lr"):
        config.resolve_params(raw)


def test_recipes_with_different_keys_are_refused():
    raw = copy.deepcopy(RAW)
    del raw["hrpro"]["recipes"]["paper"]["sub_batches"]
    with pytest.raises(config.ParamsError, match=r"hrpro\.recipes\.(paper|cpu): has other keys"):
        config.resolve_params(raw)


@pytest.mark.parametrize("dotted,value,message", [
    ("student.recipes.cpu.lr", "abc", r"student\.recipes\.cpu\.lr: must be a number, got 'abc'"),
    ("student.recipes.cpu.lrr", 1e-3, r"student\.recipes\.cpu: has other keys than student\.recipes\.paper \(differs in: lrr\)"),
    ("student.lrr", 1e-3, r"student\.lrr: unknown key; did you mean student\.lr\?"),
    ("hrpro.train.lrr", 1e-3, r"hrpro\.train\.lrr: unknown key; did you mean hrpro\.train\.lr\?"),
    ("datasets.synthetic.num_anchors", 5, r"datasets\.synthetic\.num_anchors: is 5 but datasets\.synthetic\.anchors lists 6"),
    ("datasets.synthetic.anchors", [4, 8, 16, 32, 48, 96], r"datasets\.synthetic\.anchors\[5\]: anchor length 96"),
    ("hrpro.detect.video_class_ratio", 1.5, r"hrpro\.detect\.video_class_ratio: must be 'auto' or a number"),
    ("datasets.thumos14.points.seed", 3, r"datasets\.thumos14\.points\.seed: is not read with source: dataset"),
    ("datasets.synthetic.generator.noise", -1.0, r"datasets\.synthetic\.generator\.noise: must be >= 0"),
    ("tsaspc.recipes.cpu.growth_epochs", 99, r"tsaspc\.recipes\.cpu\.growth_epochs: 99 is after the last epoch \(tsaspc\.recipes\.cpu\.epochs=30\)"),
    ("student.run", "onpiont", r"student\.run: unknown run 'onpiont'"),
    ("recipe", "gpu", r"recipe: unknown recipe 'gpu'"),
    ("online.stream_batch", 0, r"online\.stream_batch: must be > 0"),
    ("online.precision", "fp64", r"online\.precision: must be one of fp32, fp16, bf16, int8, got 'fp64'"),
])
def test_bad_values_are_refused_naming_the_key(dotted, value, message):
    raw = copy.deepcopy(RAW)
    set_leaf(raw, dotted, value)
    with pytest.raises(config.ParamsError, match=message):
        config.resolve_params(raw)


def test_unknown_top_level_key_suggests_the_nearest():
    raw = copy.deepcopy(RAW)
    raw["studnet"] = {}
    with pytest.raises(config.ParamsError, match="studnet: unknown key; did you mean student"):
        config.resolve_params(raw)


def test_a_stage_gets_only_its_objects():
    cfg = config.load_stage("teacher_cache", REPO / "params.yaml")
    assert cfg.detect.predict_batch == RAW["hrpro"]["detect"]["predict_batch"]
    with pytest.raises(AttributeError, match="does not read 'train'"):
        cfg.train


def test_readme_student_lr_key_is_the_one_the_student_reads():
    raw = copy.deepcopy(RAW)
    key = f"student.recipes.{raw['recipe']}.lr"
    set_leaf(raw, key, 5e-4)
    assert config.resolve_params(raw).student.lr == 5e-4
    assert key in (REPO / "README.md").read_text()


# --------------------------------------------------------------------------------------------
# dvc.yaml against STAGE_KEYS and the stage scripts' imports

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())


def _interpolate(text):
    for name in ("dataset", "teacher", "recipe"):
        text = text.replace("${" + name + "}", str(RAW[name]))
    return text


@pytest.mark.parametrize("stage", config.STAGES)
def test_dvc_yaml_params_are_exactly_the_stage_keys(stage):
    in_dvc = [_interpolate(p) for p in DVC["stages"][stage]["params"]]
    assert in_dvc == config.stage_key_paths(RAW, stage)


@pytest.mark.parametrize("stage", config.STAGES)
def test_dvc_yaml_code_deps_are_exactly_the_imported_modules(stage):
    deps = DVC["stages"][stage]["deps"]
    script = DVC["stages"][stage]["cmd"].split()[-1]
    code = {d for d in deps if d.endswith(".py")}
    assert code == import_closure(script), "run python scripts/sync_dvc_deps.py"
    assert not any(d.startswith("onpoint_core") and not d.endswith(".py") for d in deps), "no whole folders"


def test_student_does_not_import_the_teacher_package():
    closure = import_closure("stages/train_student.py")
    assert not any(path.startswith("onpoint_core/teachers/") for path in closure), sorted(closure)


def test_report_is_not_a_stage_dependency():
    for stage in config.STAGES:
        assert "onpoint_core/report.py" not in DVC["stages"][stage]["deps"]


# --------------------------------------------------------------------------------------------
# onpoint params

def test_onpoint_params_prints_what_the_stage_reads(tmp_path):
    raw = copy.deepcopy(RAW)
    set_leaf(raw, "student.recipes.cpu.lr", 5e-4)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(cli, ["params", "--stage", "student_train", "--params", str(path)])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed == config.stage_view(raw, "student_train")
    assert printed["student"]["recipes"]["cpu"]["lr"] == 5e-4
    assert "hrpro" not in printed
    # of `online`, the decode settings the val selection uses, not the execution-only stream batch
    assert set(printed["online"]) == {"score_threshold", "nms_iou", "tiou_floor_seconds"}


def test_onpoint_params_all_stages_and_errors(tmp_path):
    result = CliRunner().invoke(cli, ["params", "--params", str(REPO / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert all(f"# stage {stage}" in result.output for stage in config.STAGES)
    bad = copy.deepcopy(RAW)
    set_leaf(bad, "student.recipes.cpu.lr", "abc")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = CliRunner().invoke(cli, ["params", "--params", str(path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].endswith("student.recipes.cpu.lr: must be a number, got 'abc'")
    result = CliRunner().invoke(cli, ["params", "--stage", "nope", "--params", str(REPO / "params.yaml")])
    assert result.exit_code == 2 and "unknown stage 'nope'" in result.output

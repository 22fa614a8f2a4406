"""A model card for a student checkpoint (`onpoint card`): what it is, what it was trained on and
with which settings, how well it does, how to use it, and where it must not be trusted.

Everything comes from the checkpoint itself (it stores its params, online settings, val score and
provenance) plus, optionally, the test metrics of the online_eval stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..errors import OnPointError
from ..provenance import code_commit, code_hash
from .checkpoint import load_student
from .model import count_parameters

RUN_DESCRIPTIONS = {
    "onpoint": "OnPoint: OAT anchor transformer distilled from the offline teacher (pseudo segments, CAS, "
               "anticipated future), plus the point heads, with actionness-calibrated attention",
    "teacher_oat": "OAT trained on the offline teacher's pseudo segments only (the paper's baseline)",
    "distillation_free": "OAT's encoder with point heads only, decoded from the points (no teacher)",
    "fully_supervised": "OAT trained on ground-truth segments: a reference, not point supervised",
    "no_cass_anticipation": "OnPoint without the CASS and anticipation heads (and so without calibration)",
    "no_calibration": "OnPoint without the actionness calibration of the decoder",
    "no_point_supervision": "OnPoint without the point heads",
}
MAIN_METRICS = ("avg_0.1_0.5", "avg_0.3_0.7", "avg_0.1_0.7", "f1_0.5", "aedt")


def _fmt(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _revision(blobs):
    """Where the checkpoint's code is in this checkout's git history (from its git blob ids)."""
    if not blobs:
        return "not recorded (a checkpoint from before onpoint 0.2.0)."
    commit = code_commit(blobs, ".")
    if commit:
        return (f"trained on the code of commit `{commit}` (the commit that brought its training stage's "
                f"{len(blobs)} code files to the exact bytes it ran; later commits that leave them alone hold "
                f"the same code).")
    return (f"its {len(blobs)} code files (git blob ids in the checkpoint, `code_git_blobs`) match no commit of "
            f"this checkout's history: trained on uncommitted code, or in another repository.")


def model_card(model_path, metrics_path=None):
    """The card as Markdown text."""
    model, meta = load_student(model_path)
    extra = meta.get("extra") or {}
    config = meta["config"]
    run = meta.get("run", "?")
    dataset = extra.get("dataset", "unknown")
    code = extra.get("code_sha256")
    current = code_hash(".", "student_train") if Path("dvc.yaml").is_file() else None
    lines = [f"# Model card: `{Path(model_path).name}`", "",
             f"An online temporal action localisation model of the OnPoint open implementation: run "
             f"`{run}` ({RUN_DESCRIPTIONS.get(run, 'unknown run')}). It reads a stream of feature vectors "
             f"one step at a time and emits action segments (class, start, end, score) once they are "
             f"complete; at step t it uses steps <= t only, and emitted segments are never revised.", "",
             "## Model", "",
             f"- Network: window W = {config['window']} steps, anchors {config['anchors']} steps, "
             f"D = {config['d_model']}, {config['encoder_layers']} encoder / {config['decoder_layers']} decoder layers, "
             f"{count_parameters(model) / 1e6:.2f} M parameters; decoded from its "
             f"{(meta.get('variant') or {}).get('inference', 'instance')} heads.",
             f"- Input: {config['feature_dim']}-d features ({config.get('streams', 1)} stream(s)) at about "
             f"{meta['steps_per_second']:.3g} steps/s, the features it was trained on (same extractor, same rate).",
             f"- Classes ({len(meta['classes'])}): {', '.join(meta['classes'])}.", "",
             "## Training data and settings", "",
             f"- Dataset entry `{dataset}` of params.yaml; point labels only (one time stamp per action), "
             + ("except for the fully supervised reference, which read ground-truth segments."
                if run == "fully_supervised" else "plus the offline teacher's outputs where the run distils."),
             f"- Epoch chosen on the val videos: epoch {_fmt(extra.get('best_epoch'))}, val avg mAP 0.1:0.7 "
             f"{_fmt(extra.get('val_avg_0.1_0.7'))}.",
             f"- Online decode settings its epoch was selected with (params.yaml `online`; only the epoch "
             f"is chosen on val): {json.dumps(extra.get('online'))}.", ""]
    if extra.get("params"):
        lines += ["<details><summary>Resolved parameters of the student_train stage</summary>", "", "```yaml",
                  yaml.safe_dump(extra["params"], sort_keys=False, default_flow_style=None).rstrip(), "```", "",
                  "</details>", ""]
    lines += ["## Results", ""]
    metrics = None
    if metrics_path is not None and Path(metrics_path).is_file():
        try:
            metrics = json.loads(Path(metrics_path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OnPointError(f"{metrics_path}: not valid JSON") from None
        if not isinstance(metrics, dict):
            raise OnPointError(f"{metrics_path}: expected the JSON object online_eval writes")
    if metrics:
        lines += [f"Test split, from `{metrics_path}` (the online_eval stage of the same run):", "",
                  "| " + " | ".join(MAIN_METRICS) + " |", "|" + "---|" * len(MAIN_METRICS),
                  "| " + " | ".join(_fmt(metrics.get(k), 2 if k == "aedt" else 1) for k in MAIN_METRICS) + " |", ""]
    else:
        lines += ["No test metrics given (`--metrics metrics/online_eval.json` of the run that trained it).", ""]
    lines += ["## Use", "",
              "```bash",
              f"onpoint stream --model {model_path} --features video.npy --duration SECONDS",
              f"onpoint predict --model {model_path} --features FEATURE_DIR --out predictions.json",
              "```", "",
              "## Intended use and limits", "",
              "- Research on point-supervised online action localisation: comparing methods, ablations, "
              "speed studies. Not for decisions about people, safety or surveillance.",
              "- It only knows the classes above, in features of the kind and rate it was trained on; "
              "other features give meaningless scores without an error.",
              ("- Trained on the embedded synthetic benchmark: its numbers say how the method behaves on "
               "that benchmark, not on real video." if str(dataset).startswith("synthetic") or str(dataset).endswith("_synth")
               else "- Its accuracy on other datasets is unknown."),
              "- Scores are not calibrated probabilities.", "",
              "## Provenance", "",
              f"- onpoint {extra.get('package_version') or 'unknown version'}; SHA-256 of the code of its training "
              f"stage: {code or 'not recorded'}"
              + ("" if current is None or code is None else
                 " (the code here hashes the same)" if current == code else
                 " (the code here differs: this checkout would train another model)") + ".",
              f"- Git revision: {_revision(extra.get('code_git_blobs'))}",
              f"- Checkpoint format {meta.get('format')} version {meta.get('version')}.", ""]
    return "\n".join(lines)

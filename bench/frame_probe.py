"""Calibration probe of a benchmark: how separable are the steps with FULL frame labels?

    python bench/frame_probe.py [--dataset synthetic] [--context 1 --context 9]

Generates the dataset's synthetic benchmark in a temp folder, trains a small MLP on the train
and val steps with their ground-truth frame labels (a fully supervised upper-bound probe, not a
POTAL method), and prints step accuracy on the test split: all steps, action steps, background
recall. `--context K` feeds K neighbouring steps (K odd). The README's calibration numbers come
from this script.
"""

import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from onpoint_core.config import load_params
from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import generate_synthetic


def frame_table(dataset, subsets, context):
    """Stacked (steps x context*dim) inputs and per-step labels (background = C)."""
    inputs, labels = [], []
    half = context // 2
    for video_id in dataset.video_ids(*subsets):
        feats = dataset.features(video_id)
        steps = len(feats)
        centres = (np.arange(steps) + 0.5) * dataset.video(video_id)["duration"] / steps
        label = np.full(steps, dataset.num_classes)
        for seg in dataset.segments_of(video_id).itertuples():
            label[(centres >= seg.start) & (centres < seg.end)] = dataset.classes.index(seg.label)
        padded = np.pad(feats, ((half, half), (0, 0)))
        inputs.append(np.concatenate([padded[i:i + steps] for i in range(context)], axis=1))
        labels.append(label)
    return torch.tensor(np.concatenate(inputs)), torch.tensor(np.concatenate(labels))


@click.command()
@click.option("--dataset", "name", default="synthetic", show_default=True)
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--context", "contexts", type=int, multiple=True, default=[1, 9], show_default=True)
@click.option("--iterations", default=600, show_default=True)
def main(name, params_path, contexts, iterations):
    cfg = load_params(params_path, dataset=name)
    with tempfile.TemporaryDirectory() as tmp:
        generate_synthetic(cfg.data.generator.as_dict(), Path(tmp) / "d", progress=False)
        dataset = load_dataset(Path(tmp) / "d")
        for context in contexts:
            torch.manual_seed(0)
            x_train, y_train = frame_table(dataset, ("train", "val"), context)
            x_test, y_test = frame_table(dataset, ("test",), context)
            model = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], 256), torch.nn.ReLU(),
                                        torch.nn.Linear(256, dataset.num_classes + 1))
            optimiser = torch.optim.Adam(model.parameters(), 1e-3)
            for _ in range(iterations):
                batch = torch.randint(0, len(x_train), (1024,))
                loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            with torch.no_grad():
                predicted = model(x_test).argmax(1)
            action = y_test < dataset.num_classes
            print(f"{name} context {context:2d}: step accuracy {100 * (predicted == y_test).float().mean():.1f}%, "
                  f"action steps {100 * (predicted[action] == y_test[action]).float().mean():.1f}%, "
                  f"background recall {100 * (predicted[~action] == y_test[~action]).float().mean():.1f}%")


if __name__ == "__main__":
    main()

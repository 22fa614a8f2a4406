"""Shared fixtures: where the repository and the real annotation files are, and tiny datasets."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real public annotation files live beside the repository (../shared/data), never in it;
# ONPOINT_SHARED_DATA points elsewhere (e.g. when the repository is cloned to another folder).
SHARED_DATA = Path(os.environ.get("ONPOINT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def load_file(relative_path):
    """A repository file that is not part of the package (bench/, scripts/) loaded as a module, so
    its functions can be tested without running its command line."""
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def shared_data():
    """The real public annotation files (THUMOS'14, EGTEA); absent in a user's fresh clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real annotation files not found at {SHARED_DATA} (they live beside the repo, not in it)")
    return SHARED_DATA


@pytest.fixture
def raw_params():
    """params.yaml of the repository as a dict (a fresh copy per test)."""
    return copy.deepcopy(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))


GENERATOR_OF = {"sparse": "synthetic", "dense": "synthetic_dense"}   # the dataset entries of each profile


def tiny_synthetic(raw, profile="sparse", **changes):
    """A synthetic dataset entry's `generator` block sized for tests: a handful of short videos."""
    syn = copy.deepcopy(raw["datasets"][GENERATOR_OF[profile]]["generator"])
    # val_fraction 0.1: one val video of a handful, as the tiny tests were written for (the default
    # profile's 0.25 is sized for its 80 training videos)
    syn.update({"num_train_videos": 6, "num_test_videos": 3, "video_seconds": [40, 60], "val_fraction": 0.1})
    syn.update(changes)
    return syn


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP
    spin-waits make two threads many times slower; the caller's setting comes back afterwards.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

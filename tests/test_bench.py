"""The speed benchmark's own measuring parts (no timing is asserted: speed lives in bench/, not tests)."""

import pytest
import torch

from onpoint_core.student.model import OnlineStudent, flops_per_step, model_config
from tests.conftest import load_file


@pytest.fixture(scope="module")
def online_speed():
    return load_file("bench/online_speed.py")


@pytest.fixture(scope="module")
def tiny():
    config = model_config(4, 16, 2, 16, [4, 8, 16], 4, d_model=32, ffn_dim=64, encoder_layers=2, encoder_heads=4,
                          decoder_layers=2, decoder_heads=4, dropout=0.0, position_dropout=0.0)
    torch.manual_seed(0)
    model = OnlineStudent(config).eval()
    return model, {"config": config, "classes": list("abcd"), "variant": {"inference": "instance"}}


def test_the_ceiling_replays_the_matmuls_of_the_fused_encoder_too(online_speed, tiny):
    """The ceiling is only a bound if it replays every matmul of the step: torch's fused encoder
    layer runs its projections inside one op, which a recorder of top-level calls would miss."""
    model, meta = tiny
    windows = torch.zeros(1, 16, 16)
    recorded = online_speed.step_matmuls(model, windows, "instance")
    ops = [online_speed._replay_op(name, shapes, torch.device("cpu")) for name, shapes in recorded]
    matmul_flops = sum(flops for _, flops in ops)
    total = flops_per_step(model, heads="instance")
    assert 0.95 * total <= matmul_flops <= total
    # encoder (QKV, out, 2 FFN) x 2 layers and the two attention products per layer are in it
    assert sum(name == "aten::bmm" for name, _ in recorded) >= 4


def test_the_ceiling_of_batched_streams_replays_the_batched_step(online_speed, tiny):
    model, meta = tiny
    rate, matmul_flops = online_speed.matmul_ceiling(model, meta, torch.device("cpu"), seconds=0.05, streams=3)
    one = flops_per_step(model, heads="instance")
    assert rate > 0
    assert 0.95 * 3 * one <= matmul_flops <= 3 * one

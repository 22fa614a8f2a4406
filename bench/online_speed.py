"""Benchmark: streaming speed of the online student (steps per second), one stream and many batched.

    python bench/online_speed.py [--config synthetic] [--config paper] [--batch 64] [--seconds 4]
                                 [--precision fp32|bf16|int8|fp16] [--threads N] [--device cpu|cuda]

For each configuration (random weights; speed does not depend on them) it times the whole
streaming engine (ring buffer, one forward, decode, online NMS) for one stream and for `--batch`
streams advancing together, and prints steps/s next to the model's FLOPs per step (the heads the
engine runs, counted by torch) and the machine's float32 matrix-multiply peak: a square
torch.matmul (2048 on the CPU, 4096 on CUDA) on the same device and threads, timed at the start
and again at the end, the higher of the two kept (so a busy moment cannot inflate the percents).
steps/s x FLOPs/step / peak is the fraction of what the hardware allows. Batched figures count
stream-steps (64 streams x pushes). For reference it also times one matmul of the step's own FFN
shape (W x D times D x FFN): the most small matrices of that size get out of this hardware.

The ceiling: the matrix multiplies of one step (recorded with their shapes by torch.profiler from
one forward pass of the same batch, all but a few tenths of a percent of its FLOPs) replayed
alone, back to back, on fresh tensors of the same shapes and layouts, and timed like a push. No
engine can run the step faster than its own matmuls with these kernels, so that percent bounds
what the streams can reach in float32. One stream's matmuls are thin (the window's W rows, and
the decoder's M anchor rows, which re-read every decoder weight at every step), far below the
square peak; batched streams stack 64 windows into each matmul. Ceilings are printed for float32
on the CPU only. Speed is measured here, not in timed tests (shared machines make those flaky); the
load average is printed because another process on the machine slows every figure.

The last line is the summary, the same figures on one line, so runs on noisy machines compare:
  summary: paper_single <steps/s> <percent>% | paper_batched ... | synthetic_single ... | synthetic_batched ...

Configurations (docs/method.md 4, OAT's anchors 4..64 at W = 64):
  synthetic  the synthetic profile student of params.yaml, 128-d two-stream features, C 10
  paper      the paper's THUMOS'14 student: D 1024, FFN 2048, 4096-d two-stream TSN features, C 20
"""

import os
import time

import click
import numpy as np
import torch

from onpoint_core.config import PRECISIONS
from onpoint_core.online.engine import StreamingEngine
from onpoint_core.student.model import (
    OnlineStudent,
    count_parameters,
    flops_per_step,
    model_config,
    network_sizes,
)

ANCHORS = [4, 8, 16, 32, 48, 64]
CONFIGS = {
    "synthetic": {"num_classes": 10, "feature_dim": 128},
    "paper": {"num_classes": 20, "feature_dim": 4096, "d_model": 1024, "ffn_dim": 2048},
}


def build(name):
    spec = CONFIGS[name]
    if name == "synthetic":       # the student sizes of params.yaml's synthetic profile
        from onpoint_core.config import load_params

        student = load_params("params.yaml", dataset="synthetic", recipe="cpu").student
    else:                         # the paper recipe of params.yaml (D 1024, FFN 2048, 5 decoder layers)
        from onpoint_core.config import load_params

        student = load_params("params.yaml", recipe="paper").student
    config = model_config(spec["num_classes"], spec["feature_dim"], 2, 64, ANCHORS, 16, **network_sizes(student))
    torch.manual_seed(0)
    model = OnlineStudent(config).eval()
    meta = {"config": config, "classes": [f"class{i}" for i in range(spec["num_classes"])],
            "variant": {"inference": "instance"}}
    return model, meta


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device, seconds, min_reps=2):
    """Repetitions per second of `run` after one warm-up call, over at least `seconds` and `min_reps`."""
    run()
    sync(device)
    reps, began = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - began < seconds:
        run()
        reps += 1
    sync(device)
    return reps / (time.perf_counter() - began)


def matmul_rate(device, dtype, seconds, m, k, n):
    """FLOP/s of torch.matmul of an m x k by a k x n matrix."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    per_second = timed(lambda: torch.matmul(a, b), device, seconds, min_reps=3)
    return 2 * m * k * n * per_second


def matmul_peak(device, dtype, seconds):
    size = 4096 if device.type == "cuda" else 2048
    return matmul_rate(device, dtype, seconds, size, size, size)


MATMULS = ("aten::mm", "aten::addmm", "aten::_addmm_activation", "aten::bmm", "aten::baddbmm")


def step_matmuls(model, windows, heads):
    """(op name, input shapes) of every matrix multiply in one forward pass, in order."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(windows, heads=heads)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model(windows, heads=heads)
    return [(event.name, event.input_shapes) for event in prof.events() if event.name in MATMULS]


def _replay_op(name, shapes, device):
    """A closure running one recorded matmul on fresh tensors (weights transposed, as Linear has them)."""
    def rand(*shape):
        return torch.randn(*shape, device=device)

    if name in ("aten::addmm", "aten::_addmm_activation"):
        bias, a, b = rand(*shapes[0]), rand(*shapes[1]), rand(shapes[2][1], shapes[2][0]).t()
        flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
        if name == "aten::addmm":
            return lambda: torch.addmm(bias, a, b), flops
        return lambda: torch._addmm_activation(bias, a, b, use_gelu=True), flops
    if name == "aten::mm":
        a, b = rand(*shapes[0]), rand(shapes[1][1], shapes[1][0]).t()
        return lambda: torch.mm(a, b), 2 * a.shape[0] * a.shape[1] * b.shape[1]
    if name == "aten::bmm":
        a, b = rand(*shapes[0]), rand(*shapes[1])
        return lambda: torch.bmm(a, b), 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    batch1, batch2 = rand(*shapes[1]), rand(*shapes[2])          # baddbmm(input, batch1, batch2)
    bias = rand(*shapes[0])
    return (lambda: torch.baddbmm(bias, batch1, batch2),
            2 * batch1.shape[0] * batch1.shape[1] * batch1.shape[2] * batch2.shape[2])


def matmul_ceiling(model, meta, device, seconds, streams=1):
    """(replays per second, matmul FLOPs) of the step matmuls of `streams` streams alone (module doc)."""
    config = meta["config"]
    windows = torch.zeros(streams, config["window"], config["feature_dim"], device=device)
    ops = [_replay_op(name, shapes, device) for name, shapes in step_matmuls(model, windows,
                                                                               meta["variant"]["inference"])]

    def replay():
        for run, _ in ops:
            run()

    return timed(replay, device, seconds), sum(flops for _, flops in ops)


def stream_rate(model, meta, device, streams, seconds, precision="fp32", cuda_graphs=True):
    """Pushes per second of a StreamingEngine advancing `streams` streams together."""
    engine = StreamingEngine(model, meta, device=device, precision=precision,
                             cuda_graphs=cuda_graphs).start([4.0] * streams)
    rng = np.random.default_rng(0)
    steps = [torch.as_tensor(rng.normal(size=(streams, meta["config"]["feature_dim"])).astype(np.float32),
                             device=device) for _ in range(8)]
    counter = iter(range(10 ** 9))
    return timed(lambda: engine.push_arrays(steps[next(counter) % len(steps)]), device, seconds)


@click.command()
@click.option("--config", "configs", multiple=True, type=click.Choice(list(CONFIGS)), default=list(CONFIGS),
              show_default=True)
@click.option("--batch", type=int, default=64, show_default=True, help="Streams advancing together.")
@click.option("--seconds", type=float, default=4.0, show_default=True, help="Timing budget per measurement.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="The engine's precision (online.precision); the peak stays float32's.")
@click.option("--cuda-graphs/--no-cuda-graphs", default=True, show_default=True,
              help="On CUDA: replay each push as a captured CUDA graph (the engine's default).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--device", default=None, help="Default: cuda if available, else cpu.")
def main(configs, batch, seconds, precision, cuda_graphs, threads, device):
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"torch {torch.__version__} | {device} ({where}) | {torch.get_num_threads()} threads | "
          f"load average {os.getloadavg()[0]:.2f} | precision {precision}"
          f"{' | CUDA graphs ' + ('on' if cuda_graphs else 'off') if device.type == 'cuda' else ''}")
    first_peak = matmul_peak(device, torch.float32, seconds / 2)
    print(f"matmul peak float32 (start): {first_peak / 1e9:,.1f} GFLOP/s")
    results, ceilings = {}, {}
    for name in configs:
        model, meta = build(name)
        model.to(device)
        flops = flops_per_step(model, heads=meta["variant"]["inference"])
        config = meta["config"]
        shape = (config["window"], config["d_model"], config["ffn_dim"])
        small = matmul_rate(device, torch.float32, seconds / 4, *shape)
        print(f"\n{name}: {count_parameters(model) / 1e6:.2f} M parameters, {flops / 1e9:.3f} GFLOP per step "
              f"(window {config['window']}, {len(ANCHORS)} anchors); one {' x '.join(map(str, shape[:2]))} by "
              f"{' x '.join(map(str, shape[1:]))} matmul: {small / 1e9:,.1f} GFLOP/s")
        for streams in (1, batch):
            per_push = stream_rate(model, meta, device, streams, seconds, precision, cuda_graphs)
            results[(name, streams)] = (per_push * streams, flops)
            if device.type == "cpu" and precision == "fp32":
                ceilings[(name, streams)] = matmul_ceiling(model, meta, device, seconds / 2, streams)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    last_peak = matmul_peak(device, torch.float32, seconds / 2)
    peak = max(first_peak, last_peak)
    print(f"\nmatmul peak float32 (end): {last_peak / 1e9:,.1f} GFLOP/s; the reference: {peak / 1e9:,.1f} GFLOP/s")
    summary = []
    for (name, streams), (steps, flops) in results.items():
        share = steps * flops / peak
        label = "1 stream  " if streams == 1 else f"{streams} streams"
        extra = "" if streams == 1 else f" ({steps / streams:,.1f} steps/s per stream)"
        print(f"  {name:9s} {label}: {steps:10,.1f} steps/s{extra} | {steps * flops / 1e9:9,.1f} GFLOP/s "
              f"= {100 * share:5.1f}% of the float32 matmul peak")
        summary.append(f"{name}_{'single' if streams == 1 else 'batched'} {steps:.1f} {100 * share:.1f}%")
    for (name, streams), (rate, matmul_flops) in ceilings.items():
        steps, flops = results[(name, streams)]
        label = "1 stream  " if streams == 1 else f"{streams} streams"
        print(f"  {name:9s} {label} ceiling: the step's matmuls alone ({100 * matmul_flops / (flops * streams):.1f}% of "
              f"its FLOPs) {rate * streams:10,.1f} steps/s = {100 * rate * streams * flops / peak:5.1f}% of the peak; "
              f"the streams run at {100 * steps / (rate * streams):.0f}% of that")
    order = {"paper_single": 0, "paper_batched": 1, "synthetic_single": 2, "synthetic_batched": 3}
    summary.sort(key=lambda item: order.get(item.split()[0], 9))
    print("summary: " + " | ".join(summary))


if __name__ == "__main__":
    main()

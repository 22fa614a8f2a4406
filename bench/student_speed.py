"""Training speed and memory of the student: windows/s, peak memory, parameters, FLOPs per step.

    python bench/student_speed.py [--config synthetic --config paper] [--batches 3] [--batch-size 128]
                                  [--precision fp32|bf16] [--compile] [--curve plots/bench/loss.png]

Random windows and targets of the right shapes go through the real model, losses and optimiser
(the OnPoint run: every loss term on), so the figure is the training step's cost, without data
loading. `synthetic` is the default CPU profile of params.yaml (its student section with the
synthetic overrides; 128-d features, 10 classes); `paper` is the paper's configuration (D 1024, FFN 2048, two-stream 2 x 2048
features, 20 classes, W 64, 6 anchors, batch 128). Peak memory is the process's maximum resident
set size on the CPU (or torch's peak allocation on CUDA). Each config runs in a fresh process so
peaks do not mix.

--precision bf16 trains under bfloat16 autocast (CPU or CUDA; fp32 default on the CPU, bf16 the
default on CUDA), --compile wraps the model in torch.compile (timed after its first step). Whether
reduced precision keeps the loss curve: --curve PNG trains the same initial model on the same
fixed batches in fp32 and in the chosen precision and draws both per-step loss curves (their
largest relative gap is printed).
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import click
import torch

CONFIGS = {
    "synthetic": dict(num_classes=10, feature_dim=128),        # student sizes: params.yaml's synthetic profile
    "paper": dict(num_classes=20, feature_dim=4096, d_model=1024, ffn_dim=2048),   # layers: the paper recipe
}
WINDOW, ANCHORS, ANTICIPATION = 64, [4, 8, 16, 32, 48, 64], 16


def measure(name, batches, batch_size, precision, compile_model=False, losses=False):
    from onpoint_core.student.losses import total_loss
    from onpoint_core.student.model import OnlineStudent, count_parameters, flops_per_step, model_config, network_sizes
    from onpoint_core.student.variants import RUNS

    spec = CONFIGS[name]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "synthetic":
        from onpoint_core.config import load_params

        student = load_params("params.yaml", dataset="synthetic", recipe="cpu").student
    else:                       # the paper recipe of params.yaml (D 1024, FFN 2048, 5 decoder layers)
        from onpoint_core.config import load_params

        student = load_params("params.yaml", recipe="paper").student.replace(d_model=spec["d_model"],
                                                                             ffn_dim=spec["ffn_dim"])
    torch.manual_seed(0)
    model = OnlineStudent(model_config(spec["num_classes"], spec["feature_dim"], 2, WINDOW, ANCHORS, ANTICIPATION,
                                       **network_sizes(student))).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    c, m = spec["num_classes"], len(ANCHORS)
    batch = {
        "windows": torch.randn(batch_size, WINDOW, spec["feature_dim"], device=device),
        "cas": torch.rand(batch_size, WINDOW, c + 1, device=device),
        "valid": torch.ones(batch_size, WINDOW, dtype=torch.bool, device=device),
        "classes": torch.softmax(torch.randn(batch_size, m, c + 1, device=device), -1),
        "regression": torch.randn(batch_size, m, 2, device=device),
        "positive": torch.rand(batch_size, m, device=device) < 0.2,
        "point_classes": torch.randint(0, c + 1, (batch_size, m), device=device),
        "point_offset": torch.rand(batch_size, m, device=device),
        "has_point": torch.rand(batch_size, m, device=device) < 0.3,
        "future": (torch.rand(batch_size, c, device=device) < 0.1).float(),
    }
    weights = {**student.loss_weights.as_dict(), "gamma": 1.0}   # the recipe's weights (gamma: the dataset's)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    network = torch.compile(model) if compile_model else model
    curve = []

    def step():
        with autocast:
            out = network(batch["windows"])
        loss, _ = total_loss(out, batch, RUNS["onpoint"], weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if losses:
            curve.append(float(loss))

    step()                                   # warm-up (allocations, kernel choice, compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for _ in range(batches):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": name, "device": str(device), "threads": torch.get_num_threads(), "batch_size": batch_size,
            "windows_per_second": batches * batch_size / seconds, "peak_memory_gib": peak / 2**30,
            "parameters_millions": count_parameters(model) / 1e6,
            "parameters_without_anticipation_millions": (count_parameters(model) - sum(
                p.numel() for mod in (model.anticipation_frame, model.anticipation_head) for p in mod.parameters())) / 1e6,
            "gflops_per_step_inference": flops_per_step(model) / 1e9, "precision": precision,
            "compiled": bool(compile_model), "losses": curve}


def in_fresh_process(name, batches, batch_size, precision, compile_model, losses=False):
    """measure() in a fresh process (its own peak memory)."""
    command = [sys.executable, __file__, "--child", name, "--batches", str(batches), "--batch-size", str(batch_size),
               "--precision", precision] + (["--compile"] if compile_model else []) + (["--losses"] if losses else [])
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def draw_curves(path, name, runs):
    """Per-step training loss of each run (same initial model, same batches) on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for (label, r), style in zip(runs.items(), ("-", "--")):
        axis.plot(range(1, len(r["losses"]) + 1), r["losses"], style,
                  label=f"{label} ({r['windows_per_second']:.0f} windows/s)")
    axis.set(xlabel="training step (same batches)", ylabel="total loss", title=f"student training, {name} configuration")
    axis.legend()
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


@click.command()
@click.option("--config", "configs", multiple=True, type=click.Choice(sorted(CONFIGS)), default=["synthetic", "paper"])
@click.option("--batches", default=3, show_default=True, help="Timed training steps per config.")
@click.option("--batch-size", default=128, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None,
              help="Autocast dtype of the forward pass; default fp32 on the CPU, bf16 on CUDA.")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model.")
@click.option("--curve", "curve_path", default=None,
              help="PNG: loss per step in fp32 and in --precision (bf16 if not given) from the same start.")
@click.option("--child", hidden=True, default=None)
@click.option("--losses", is_flag=True, hidden=True)
def main(configs, batches, batch_size, precision, compile_model, curve_path, child, losses):
    precision = precision or ("bf16" if torch.cuda.is_available() else "fp32")
    if child:
        print(json.dumps(measure(child, batches, batch_size, precision, compile_model, losses)))
        return
    for name in configs:
        r = in_fresh_process(name, batches, batch_size, precision, compile_model)
        print(f"{name:9s} {r['device']} ({r['threads']} threads, {r['precision']}{', compiled' if r['compiled'] else ''}), "
              f"batch {r['batch_size']}: "
              f"{r['windows_per_second']:.1f} training windows/s, peak memory {r['peak_memory_gib']:.2f} GiB, "
              f"{r['parameters_millions']:.2f}M parameters ({r['parameters_without_anticipation_millions']:.2f}M "
              f"without the training-only anticipation head), {r['gflops_per_step_inference']:.3f} GFLOPs "
              f"per inference step (2 per multiply-add)")
        if curve_path:
            other = precision if precision != "fp32" else "bf16"
            runs = {p: in_fresh_process(name, batches, batch_size, p, compile_model, losses=True)
                    for p in ("fp32", other)}
            a, b = (runs[p]["losses"] for p in ("fp32", other))
            gap = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))
            path = Path(curve_path)
            path = path.with_name(f"{path.stem}_{name}{path.suffix}") if len(configs) > 1 else path
            draw_curves(path, name, runs)
            print(f"  loss curves fp32 vs {other}: largest relative gap {100 * gap:.2f}% over {len(a)} steps -> {path}")


if __name__ == "__main__":
    main()

"""Student training loop: Adam, the val plateau rule (StepLR without val videos), seeded, resumable,
optionally data-parallel (DDP).

Determinism and resume: each epoch's sample order comes from a generator seeded by (seed, epoch),
so a resumed run recomputes the order and skips the batches it already did; the resume file holds
weights, optimiser, scheduler, RNG state and the loss history (plain types and tensors).

Data parallel: with `world_size > 1` every rank builds the same WindowData, takes every
world_size-th sample of the epoch's order, and runs batch_size / world_size windows per step;
DDP averages the gradients, so all ranks hold identical weights. Rank 0 writes files.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext

import torch

from ..errors import OnPointError
from ..progress import note
from ..progress import progress as progress_bar
from ..resume import read_resume_file, write_resume_file
from .losses import total_loss

TERMS = ("ins", "cass", "ant", "pnt")
RESUME_FORMAT = "onpoint.student-resume/3"      # /3: the best val epoch's weights and the LR decays


def _resume_key(fingerprint):
    return {k: fingerprint[k] for k in sorted(fingerprint or {})}


def save_resume(path, model, optimizer, scheduler, epoch, batch_in_epoch, history, fingerprint, sums=None, best=None):
    model = getattr(model, "module", model)
    payload = {
        "format": RESUME_FORMAT,
        "sums": dict(sums or {}),
        "best": best,
        "fingerprint": _resume_key(fingerprint),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": int(epoch),
        "batch": int(batch_in_epoch),
        "history": list(history),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    write_resume_file(path, payload)


def load_resume(path, fingerprint):
    """The resume payload if `path` exists and was made by the same data and params, else None
    (a file from other data or params is refused, naming what differs)."""
    if path is None or not path.exists():
        return None
    return read_resume_file(path, RESUME_FORMAT, _resume_key(fingerprint))


def _copy_state(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _plateau(best, epoch_done, patience):
    """`patience` epochs in a row without a better val score since the best epoch or the last
    LR decay. Epochs before the first non-zero score do not count: a run still at the class
    prior (nothing detected on val) has not started, it has not converged."""
    if best is None or patience is None or best["score"] <= 0:
        return False
    return epoch_done - max(best["epoch"], best.get("decayed_at", 0)) >= patience


def _after_epoch(best, epoch_done, cfg, optimizer):
    """The convergence rule after an epoch with a val score: on a plateau, multiply the LR by
    `lr_gamma` (at most `lr_decays` times); the next plateau after that stops training.
    Returns True to stop. The decay count lives in `best` (saved in the resume file)."""
    if not _plateau(best, epoch_done, cfg.patience):
        return False
    if best.get("decays", 0) >= cfg.lr_decays:
        return True
    for group in optimizer.param_groups:
        group["lr"] *= cfg.lr_gamma
    best["decays"] = best.get("decays", 0) + 1
    best["decayed_at"] = epoch_done
    return False


def train_student(model, data, variant, cfg, weights, device, *, train_stride, fingerprint=None, resume_path=None,
                  checkpoints_per_epoch, progress=True, rank=0, world_size=1, on_epoch=None, on_batch=None,
                  evaluate=None):
    """Train in place. cfg: the typed student settings (config.StudentCfg); train_stride: the
    dataset's (every n-th step per epoch). `on_epoch` / `on_batch` are called with each history
    row after its resume save (rank 0).

    `evaluate(model) -> float` (the val avg mAP, runner.val_scorer) makes the run converge by one
    rule, the same for every run: after each epoch the score goes into the epoch row
    (`val_avg`); when `cfg.patience` epochs in a row bring no better score the LR is multiplied by
    `cfg.lr_gamma` (instead of StepLR's fixed epochs, which cut the LR of a slow-starting run
    before it had begun: see `_plateau`), and the plateau after `cfg.lr_decays` decays stops
    training; `cfg.epochs` caps it. The model ends with the weights of the best epoch. Every rank
    evaluates the same weights, so all ranks decide alike. Without `evaluate` (no val videos) the
    LR follows StepLR(`lr_step`) and every epoch runs. Returns (history rows, throughput dict,
    selection dict or None)."""
    batch_size = int(cfg.batch_size)
    if batch_size % world_size:
        raise OnPointError(f"params.yaml: student.batch_size {batch_size} is not divisible by processes {world_size}")
    per_rank = batch_size // world_size
    epochs, stride, seed = int(cfg.epochs), int(train_stride), int(cfg.seed)
    core = model
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    optimizer = torch.optim.Adam(core.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    use_amp = device.type == "cuda"
    active = {"ins": bool(variant.instance_targets), "cass": variant.cass, "ant": variant.anticipation,
              "pnt": variant.points}
    history, start_epoch, start_batch, resumed_sums, best = [], 0, 0, {}, None
    resume = load_resume(resume_path, fingerprint) if resume_path is not None else None
    if resume is not None:
        best = resume.get("best")
        core.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        history, start_epoch, start_batch = resume["history"], resume["epoch"], resume["batch"]
        resumed_sums = resume.get("sums") or {}
        torch.set_rng_state(resume["torch_rng"])
        if resume["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
        if rank == 0 and progress:
            note(f"resuming student training at epoch {start_epoch + 1}, batch {start_batch}")

    model.train()
    windows_done, seconds = 0, 0.0
    for epoch in range(start_epoch, epochs):
        if best is not None and best.get("stopped"):     # (a run resumed after its last epoch)
            break
        order = data.epoch_samples(epoch, stride, seed)
        order = order[:len(order) - len(order) % world_size]     # every rank runs the same number of batches
        mine = order[rank::world_size]
        num_batches = len(mine) // per_rank if len(mine) >= per_rank else 1
        # resume saves at evenly spaced batches (a kill loses at most 1/checkpoints_per_epoch of an
        # epoch) and after every epoch; 0 = after epochs only
        every = math.ceil(num_batches / checkpoints_per_epoch) if checkpoints_per_epoch else 0
        bar = progress_bar(total=num_batches, initial=start_batch, desc=f"student epoch {epoch + 1}/{epochs}",
                           unit="batch", disable=not progress or rank != 0, leave=False)
        sums = {k: 0.0 for k in ("loss",) + TERMS}
        counted = 0
        if start_batch and resumed_sums:      # the interrupted epoch's batches before the resume still count
            counted = int(resumed_sums.pop("counted"))
            sums.update(resumed_sums)
            resumed_sums = {}
        for b in range(start_batch, num_batches):
            tick = time.perf_counter()
            batch = data.batch(mine[b * per_rank:(b + 1) * per_rank].to(data.features.device))
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
            with autocast:
                out = model(batch["windows"])
            loss, terms = total_loss(out, batch, variant, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seconds += time.perf_counter() - tick
            windows_done += len(batch["windows"]) * world_size
            value = float(loss.detach())
            if value != value:      # NaN
                raise OnPointError(f"student training diverged (loss NaN) at epoch {epoch + 1}, batch {b}")
            sums["loss"] += value
            for k in TERMS:
                sums[k] += terms[k] or 0.0
            counted += 1
            row = {"epoch": epoch + 1, "batch": b, "loss": value, **terms}
            history.append({"kind": "batch", **row})      # every rank keeps it (the runner reads it)
            bar.set_postfix(loss=f"{value:.3f}")
            bar.update(1)
            if rank == 0 and resume_path is not None and every and (b + 1) % every == 0 and b + 1 < num_batches:
                save_resume(resume_path, model, optimizer, scheduler, epoch, b + 1, history, fingerprint,
                            sums={**sums, "counted": counted}, best=best)
            if on_batch is not None and rank == 0:
                on_batch(row)
        bar.close()
        if evaluate is None:
            scheduler.step()
        start_batch = 0
        epoch_row = {"kind": "epoch", "epoch": epoch + 1, "batch": num_batches,
                     "loss": sums["loss"] / max(counted, 1),
                     **{k: (sums[k] / max(counted, 1) if active[k] else None) for k in TERMS}}
        if evaluate is not None:
            epoch_row["val_avg"] = float(evaluate(core))
            model.train()
            if best is None or epoch_row["val_avg"] > best["score"]:
                kept = {k: best[k] for k in ("decays", "decayed_at") if k in best} if best else {}
                best = {"epoch": epoch + 1, "score": epoch_row["val_avg"], "state": _copy_state(core), **kept}
            best["stopped"] = _after_epoch(best, epoch + 1, cfg, optimizer)
            epoch_row["lr"] = optimizer.param_groups[0]["lr"]
        history.append(epoch_row)
        if rank == 0 and progress:
            val = f", val avg {epoch_row['val_avg']:.2f}, lr {epoch_row['lr']:.1e}" if "val_avg" in epoch_row else ""
            note(f"student epoch {epoch + 1}/{epochs}: loss {epoch_row['loss']:.4f}{val}")
        if rank == 0:
            if resume_path is not None:
                save_resume(resume_path, model, optimizer, scheduler, epoch + 1, 0, history, fingerprint, best=best)
            if on_epoch is not None:
                on_epoch(epoch_row)
        if best is not None and best["stopped"]:
            break
    selection = None
    if best is not None:
        core.load_state_dict(best["state"])
        trained = max(row["epoch"] for row in history if row["kind"] == "epoch")
        selection = {"best_epoch": best["epoch"], "val_avg": best["score"], "epochs_trained": trained,
                     "stopped_early": trained < epochs, "lr_decays": best.get("decays", 0)}
    throughput = {"windows_per_second": windows_done / seconds if seconds else None,
                  "windows_trained": int(windows_done), "train_seconds": seconds}
    return history, throughput, selection

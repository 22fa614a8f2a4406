"""The streaming engine (docs/method.md 5): N independent streams advance one step per `push`, with one
batched forward pass for all of them; it returns the proposals that became final at that step.

Conventions (see `decode`): step t of a stream covers [t, t+1)/rate s; at step t "now" and the
gen_time of everything emitted are (t+1)/rate s; the window is the last W steps ending at t, zero
padded on the left at the start of a stream; anchors end at now. Proposals are emitted only when
their end <= now, so no proposal ends after its generation time, and because the window holds
steps <= t only, what is emitted at step t depends on steps <= t only.

The evaluation stage (`stream_videos`) and `onpoint stream` both go through `push_arrays`, so
there is one decode path. Features are not checked for NaN here (callers check once, up front or
per step, and name the step).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch

from ..config import PRECISIONS
from ..errors import OnPointError
from .decode import Candidates, candidates, head_tensor, host_arrays
from .onms import OnlineNMS

PROPOSAL_COLUMNS = ["video_id", "label", "start", "end", "score", "gen_time"]


class NonFiniteOutput(OnPointError):
    """The network's output for some streams at one step is NaN or inf.

    Finite but huge features (1e30) overflow inside the network; NaN scores then fail every
    threshold and the stream silently emits nothing. Callers know the stream names and add them.
    """

    def __init__(self, streams, steps):
        self.streams, self.steps = np.asarray(streams), np.asarray(steps)
        super().__init__(f"step {int(self.steps[0])} of stream {int(self.streams[0])}: the network's output is "
                         f"NaN or inf")


def _nonfinite_rows(arrays):
    """Boolean mask of the rows (streams) whose decode inputs hold a NaN or inf, or None if none do."""
    bad = np.zeros(arrays[0].shape[0], dtype=bool)
    for values in arrays:
        bad |= ~np.isfinite(values).all(axis=1)
    return bad if bad.any() else None


def check_precision(precision, device):
    """Refuse a precision the device cannot run, naming it (fp16 needs CUDA, int8 the CPU)."""
    if precision not in PRECISIONS:
        raise OnPointError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise OnPointError("precision fp16 runs on CUDA only (use bf16 on the CPU)")
    if precision == "int8" and device.type != "cpu":
        raise OnPointError("precision int8 (dynamic quantisation of the Linear layers) runs on the CPU only")


def inference_network(model, precision):
    """The network the engine runs: the model itself, or for int8 a dynamically quantised copy
    (weights int8 per Linear, activations quantised on the fly; the caller's model is untouched)."""
    if precision != "int8":
        return model
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # torch.ao's deprecation notices, once per Linear
        network = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    for module in network.modules():
        if isinstance(module, torch.nn.TransformerEncoderLayer):
            # torch's fused encoder-layer kernel reads the Linear weights as float tensors, which
            # quantised Linears do not have; a (no-op) hook is torch's per-module way to take the
            # layer's plain path, which calls the quantised Linears
            module.register_forward_pre_hook(_plain_path)
    return network


def _plain_path(module, args):
    """No-op forward pre-hook (see inference_network)."""
    return None


class StreamingEngine:
    """Ring buffers of the last W steps of N streams, the student, the decoder and the online NMS.

    `meta` is the checkpoint's meta (load_student): config (window, anchors, feature_dim,
    num_classes), classes, variant["inference"] ("instance" heads, or "point" heads for the
    distillation-free run). `precision` (online.precision): fp32 (default, exact), bf16 (autocast
    on CPU or CUDA), fp16 (autocast, CUDA only) or int8 (dynamic quantisation, CPU only); the
    README's speed section measures each against fp32.
    """

    def __init__(self, model, meta, score_threshold=0.1, nms_iou=0.3, tiou_floor_seconds=1.0, device=None,
                 precision="fp32", cuda_graphs=True):
        model = getattr(model, "module", model)
        config = dict(meta.get("config") or model.config)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        check_precision(precision, self.device)
        self.precision = precision
        self.model = inference_network(model.to(self.device).eval(), precision)
        self.window = int(config["window"])
        self.feature_dim = int(config["feature_dim"])
        self.num_classes = int(config["num_classes"])
        self.anchors = np.asarray(config["anchors"], dtype=np.float64)
        self.classes = [str(c) for c in meta.get("classes") or range(self.num_classes)]
        if len(self.classes) != self.num_classes:
            raise OnPointError(f"checkpoint meta: {len(self.classes)} class names for {self.num_classes} classes")
        self.mode = (meta.get("variant") or {}).get("inference", "instance")
        if self.mode not in ("instance", "point"):
            raise OnPointError(f"checkpoint meta: unknown inference heads {self.mode!r} (expected instance or point)")
        if not 0.0 <= score_threshold <= 1.0:
            raise OnPointError(f"score threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 <= nms_iou < 1.0:
            raise OnPointError(f"online NMS tIoU must be in [0, 1), got {nms_iou}")
        if not tiou_floor_seconds > 0:
            raise OnPointError(f"tIoU floor must be > 0 seconds, got {tiou_floor_seconds}")
        self.score_threshold, self.nms_iou, self.tiou_floor = float(score_threshold), float(nms_iou), float(
            tiou_floor_seconds)
        # on CUDA a push of every stream replays one captured graph (forward + the decode's device
        # part) instead of some hundred kernel launches; anything that cannot be captured runs eagerly
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda" and precision != "int8"
        self._graph = None
        self.n_streams = 0

    def start(self, rates):
        """Begin N fresh streams; `rates` are their steps per second (n_steps / duration)."""
        rates = np.asarray(rates, dtype=np.float64).reshape(-1)
        if len(rates) == 0 or not np.all(np.isfinite(rates) & (rates > 0)):
            raise OnPointError(f"stream rates must be finite and > 0 steps/s, got {rates.tolist()}")
        self.n_streams = len(rates)
        self.rates = rates
        self.steps = np.zeros(self.n_streams, dtype=np.int64)      # steps pushed so far (= t + 1)
        # each step is written twice, at slot and slot + W, so the last W steps in order are always
        # one slice [slot + 1, slot + W] of this 2W buffer: no gather on the common path
        self.buffer = torch.zeros(self.n_streams, 2 * self.window, self.feature_dim, device=self.device)
        self.nms = OnlineNMS(self.n_streams, self.num_classes, self.nms_iou, self.tiou_floor)
        self._offsets = torch.arange(1, self.window + 1, device=self.device)
        self._all = np.arange(self.n_streams)
        if self._graph is not None and self._graph.batch != self.n_streams:
            self._graph = None
        return self

    def _autocast(self):
        if self.precision in ("fp16", "bf16"):
            dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def _windows(self, features, rows):
        """Write this step of the active `rows` into the buffer; their windows, oldest step first."""
        slots = self.steps[rows] % self.window
        self.steps[rows] += 1
        every = len(rows) == self.n_streams
        if every and (slots == slots[0]).all():      # streams that started together: one slice
            slot = int(slots[0])
            self.buffer[:, slot] = features
            self.buffer[:, slot + self.window] = features
            return self.buffer[:, slot + 1:slot + 1 + self.window]
        rows_t = torch.as_tensor(rows, device=self.device)
        slot_t = torch.as_tensor(slots, device=self.device)
        feats = features if every else features[rows_t]
        self.buffer[rows_t, slot_t] = feats
        self.buffer[rows_t, slot_t + self.window] = feats
        return self.buffer[rows_t[:, None], slot_t[:, None] + self._offsets[None, :]]

    def push_arrays(self, features, active=None):
        """Advance the active streams by one step; returns the emitted proposals as arrays.

        features: N x feature_dim (tensor or array; rows of inactive streams are ignored);
        active: boolean mask of N or None (all). Returns (Candidates of the emitted proposals, with
        `stream` indexing the N streams, ordered by stream then score desc; gen_time per proposal).
        """
        if self.n_streams == 0:
            raise RuntimeError("call start(rates) before push")
        features = torch.as_tensor(features, dtype=torch.float32, device=self.device)
        if features.shape != (self.n_streams, self.feature_dim):
            raise OnPointError(f"features of one step must be {self.n_streams} x {self.feature_dim}, "
                               f"got {' x '.join(map(str, features.shape))}")
        if active is None:
            rows = self._all
        else:
            active = np.asarray(active, dtype=bool).reshape(-1)
            if active.shape != (self.n_streams,):
                raise OnPointError(f"active mask must have {self.n_streams} entries, got {active.shape[0]}")
            rows = np.flatnonzero(active)
            if len(rows) == 0:
                return Candidates.empty(), np.zeros(0)
        arrays = host_arrays(self._heads(self._windows(features, rows)))
        bad = _nonfinite_rows(arrays)
        if bad is not None:
            raise NonFiniteOutput(rows[bad], self.steps[rows[bad]] - 1)
        found = candidates(arrays, self.mode, self.anchors, self.steps[rows].astype(np.float64), self.rates[rows],
                           self.score_threshold)
        if len(found) == 0:
            return found, np.zeros(0)
        found.stream = rows[found.stream]
        now = self.steps[found.stream] / self.rates[found.stream]
        emitted = self.nms.step(found.stream, found.label, found.start, found.end, found.score, now,
                                tie=found.anchor)
        chosen = np.flatnonzero(emitted)
        chosen = chosen[np.lexsort((found.anchor[chosen], -found.score[chosen], found.stream[chosen]))]
        return found.take(chosen), now[chosen]

    def _eager_heads(self, windows):
        with torch.inference_mode(), self._autocast():
            return head_tensor(self.model(windows.contiguous(), heads=self.mode), self.mode)

    def _heads(self, windows):
        """The network and the decode's device part on a batch of windows: S x M x k (decode.head_tensor)."""
        if self.cuda_graphs and windows.shape[0] == self.n_streams:
            if self._graph is None:
                try:
                    self._graph = _CapturedHeads(self._eager_heads, windows)
                except Exception as exc:    # noqa: BLE001  capture is not possible here: eager from now on
                    from ..progress import note

                    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                    note(f"CUDA graph capture failed ({reason}); streaming without graphs")
                    self.cuda_graphs = False
                    return self._eager_heads(windows)
            return self._graph(windows)
        return self._eager_heads(windows)

    def push(self, features, active=None):
        """Advance the active streams by one step; per stream, the proposals emitted at this step.

        Each proposal is a dict: label (class name), start, end, score, gen_time (seconds).
        """
        found, gen_time = self.push_arrays(features, active)
        out = [[] for _ in range(self.n_streams)]
        for stream, label, start, end, score, gen in zip(found.stream.tolist(), found.label.tolist(),
                                                         found.start.tolist(), found.end.tolist(),
                                                         found.score.tolist(), gen_time.tolist()):
            out[stream].append({"label": self.classes[label], "start": start, "end": end, "score": score,
                                "gen_time": gen})
        return out


class _CapturedHeads:
    """A CUDA graph of `run` (windows -> S x M x k) for one batch shape: static input and output
    buffers, warmed up on a side stream first (as torch's CUDA-graph notes ask). Replays run the
    very kernels of the eager path, so the numbers are the eager path's."""

    def __init__(self, run, example):
        self.batch = example.shape[0]
        self.inputs = example.contiguous().clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                run(self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        caller = torch.cuda.current_stream()
        try:
            # thread_local: CUDA calls of other threads (data-loader pinning, NCCL) during the
            # capture neither fail nor invalidate it
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.outputs = run(self.inputs)
        except Exception:
            torch.cuda.set_stream(caller)     # a failed capture can leave torch's capture stream current
            raise

    def __call__(self, windows):
        self.inputs.copy_(windows)
        self.graph.replay()
        return self.outputs


def _chunk_steps(batch, feature_dim, budget_bytes=64 << 20):
    """How many steps of a batch to stage on the device at once (bounded host/device memory)."""
    return int(max(1, min(256, budget_bytes // max(1, batch * feature_dim * 4))))


def stream_videos(engine_or_model, features_by_video, durations, batch_size=64, progress=True, meta=None,
                  **engine_options):
    """Stream every video through the engine, `batch_size` videos at a time; all emitted proposals.

    features_by_video: {video_id: n_steps x feature_dim array}; durations: {video_id: seconds}
    (rate = n_steps / duration). Videos are batched longest first so that batches waste little;
    a finished video's stream is masked out (no forward, no proposals) while longer ones go on.
    Pass a StreamingEngine, or a model with `meta` (and engine options). Returns a DataFrame
    video_id, label, start, end, score, gen_time in the input order of the videos, then emission
    order.
    """
    from ..progress import progress as progress_bar

    engine = engine_or_model if isinstance(engine_or_model, StreamingEngine) else StreamingEngine(
        engine_or_model, meta if meta is not None else {}, **engine_options)
    videos = list(features_by_video)
    arrays, rates = {}, {}
    for video in videos:
        feats = np.asarray(features_by_video[video])
        if feats.ndim != 2 or feats.shape[1] != engine.feature_dim:
            raise OnPointError(f"video {video}: features of shape {feats.shape}, the model expects "
                               f"n_steps x {engine.feature_dim}")
        if len(feats) == 0:
            continue
        bad = np.flatnonzero(~np.isfinite(feats).all(axis=1))
        if len(bad):
            raise OnPointError(f"video {video}: feature step {bad[0]} is not finite (NaN or inf)")
        if video not in durations or not float(durations[video]) > 0:
            raise OnPointError(f"video {video}: no positive duration given")
        arrays[video] = feats
        rates[video] = len(feats) / float(durations[video])
    position = {video: i for i, video in enumerate(videos)}
    ordered = sorted(arrays, key=lambda v: (-len(arrays[v]), position[v]))
    frames = []
    bar = progress_bar(total=sum(len(a) for a in arrays.values()), desc="streaming", unit="step", disable=not progress)
    for begin in range(0, len(ordered), batch_size):
        batch = ordered[begin:begin + batch_size]
        lengths = np.array([len(arrays[v]) for v in batch])
        engine.start([rates[v] for v in batch])
        chunk = _chunk_steps(len(batch), engine.feature_dim)
        found_parts, gen_parts = [], []
        for chunk_start in range(0, int(lengths.max()), chunk):
            stop = min(chunk_start + chunk, int(lengths.max()))
            staged = np.zeros((len(batch), stop - chunk_start, engine.feature_dim), dtype=np.float32)
            for i, video in enumerate(batch):
                part = arrays[video][chunk_start:stop]
                staged[i, :len(part)] = part
            staged = torch.as_tensor(staged, device=engine.device)
            for offset in range(stop - chunk_start):
                active = lengths > chunk_start + offset
                try:
                    found, gen_time = engine.push_arrays(staged[:, offset], active)
                except NonFiniteOutput as exc:
                    raise OnPointError(f"video {batch[int(exc.streams[0])]}: step {int(exc.steps[0])}: the network's "
                                       f"output is NaN or inf (features far outside the training range?)") from None
                if len(found):
                    found_parts.append(found)
                    gen_parts.append(gen_time)
                bar.update(int(active.sum()))
        if found_parts:
            frames.append(pd.DataFrame({
                "video_id": np.array(batch, dtype=object)[np.concatenate([f.stream for f in found_parts])],
                "label": np.array(engine.classes, dtype=object)[np.concatenate([f.label for f in found_parts])],
                "start": np.concatenate([f.start for f in found_parts]),
                "end": np.concatenate([f.end for f in found_parts]),
                "score": np.concatenate([f.score for f in found_parts]),
                "gen_time": np.concatenate(gen_parts),
            }))
    bar.close()
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("video_id", "label") else float)
                             for c in PROPOSAL_COLUMNS})
    table = pd.concat(frames, ignore_index=True)
    table["_video_order"] = table["video_id"].map(position)
    table = table.sort_values(["_video_order", "gen_time"], kind="stable").drop(columns="_video_order")
    return table.reset_index(drop=True)[PROPOSAL_COLUMNS]

"""TSASPC-style offline teacher for dense / procedural actions (docs/method.md 3b).

An MS-TCN trained from points: frames are first labelled by an ensemble of clusterings seeded
at the stamps (`clustering.py`), the network is trained on those frames with the timestamp
supervision losses, and after `growth_epochs` the labels grow by clustering in the network's
own 64-d features. The teacher never sees ground-truth segments.

Choices where the method is silent (each one is a parameter or written down here):
- Background stamps (`background_stamps`, `background_gap_factor`): see `clustering.py`. The
  typical action length L is the median spacing of consecutive points pooled over the training
  videos (a points-only estimate: for back-to-back actions it is the action length; background
  between actions lengthens it, which makes background stamps rarer, the safe side).
  `label_report()` says how many stamps were added and how many frames they labelled.
- Two phases, as TSASPC: epochs 1..growth_epochs train the CE on the stamps alone (points and
  background stamps); later epochs train it on the ensemble labels, grown every batch. The
  cluster loss uses the ensemble intervals in both phases (on the stamps alone it would be 0).
  Growth starts at 5/7 of training (epoch 50 of 70; the cpu recipe 21 of 30).
- Cluster loss (TSASPC's definition): for every labelled frame, the Euclidean distance between
  its L2-normalised last-stage feature (64-d) and that of its interval's stamp; mean over
  labelled frames.
- Confidence loss: along the log-probability of a stamp's class, every increase when moving
  away from the stamp towards the next stamp is penalised (both directions, between consecutive
  stamps, background stamps included); per video the mean over the masked differences, then
  the mean over the videos of the batch (TSASPC sums over the batch, which ties the weight to
  the batch size).
- CE, smoothing and confidence are summed over the stages (MS-TCN); the cluster loss is once.
- Smoothing (T-MSE): squared difference of neighbouring log-probabilities (previous frame
  detached), clamped at `smoothing_clamp`, mean over classes and valid frame pairs.
- Label growth (after `growth_epochs`): as in TSASPC, each batch first grows its videos' labels
  from the detached last-stage features of its own training forward pass (so growth costs no
  extra forward pass), then trains on the grown labels; each video grows once per epoch.
- Padding is masked after every convolution (also after the input 1x1 convs, which MS-TCN
  leaves unmasked), so a video's CAS does not depend on what it is batched with.
- Dropout2d on the input features is channel dropout (`nn.Dropout1d`) before the projection.

Layout: model.py (MS-TCN), losses.py (smoothing, confidence, cluster), training.py (pseudo
frame labels, label growth, fit, crash-safe resume), teacher.py (inference, runs, checkpoints);
the clustering ensemble is ../clustering.py.
"""

from .losses import cluster_loss, confidence_loss, smoothing_loss
from .model import MSTCN
from .teacher import TSASPCTeacher
from .training import RESUME_FORMAT

__all__ = ["MSTCN", "RESUME_FORMAT", "TSASPCTeacher", "cluster_loss", "confidence_loss", "smoothing_loss"]

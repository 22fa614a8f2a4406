"""OnPoint: point-supervised online temporal action localization by offline-to-online distillation.

Sub-packages, one per concern:
  data        canonical dataset folder, synthetic benchmark, importers of public layouts
  points      point labels (LACP points, Gaussian points)
  teachers    offline point-supervised teachers (HR-Pro style, TSASPC style), caching, pseudo segments
  evaluation  tIoU, mAP, F1, AEDT on prediction tables
"""

__version__ = "0.1.0"

"""Streaming inference (docs/method.md 5): feed one feature step per stream, get back the proposals that
became final at that step.

`engine.StreamingEngine` keeps a ring buffer of the last W steps per stream and runs one batched
forward per step for all streams; `decode` turns anchor predictions into candidate segments (OAT
instance heads, or the point heads of the distillation-free run); `onms.OnlineNMS` is MATR's
online NMS that decides which candidates are emitted. `stream_cli` is `onpoint stream`. The
evaluation stage and the command share this one decode path.
"""

"""Live scoring: the `score` command (command.py) and its loop, model serving with hot reload
(torch or ONNX Runtime), per-stream thresholds; and the `replay`, `monitor` and `publish` commands.

`loop.Scorer` is the only part that talks to the broker.
"""

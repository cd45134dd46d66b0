"""Offline work on files: `train`, `evaluate` and `score-file` (command.py), `bench-images`,
with the reports, the PyOD baselines and the model directory they read and write."""

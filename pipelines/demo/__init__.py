"""The `demo` command: train, serve and replay MIT-BIH ECG through Kafka, then one pass of the
learning loop (loop_step.py)."""

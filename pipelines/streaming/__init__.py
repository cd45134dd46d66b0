"""Kafka live scoring: message codec, model serving with hot reload, metrics and the scoring loop.

`codec` is pure (bytes in, bytes out, no Kafka); `loop.Scorer` is the only part that
talks to the broker.
"""

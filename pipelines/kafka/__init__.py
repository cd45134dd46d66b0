"""What every Kafka capability shares: the clients (kafka_io), the security settings, the
metrics and log helper, the message codec and a local broker for the demo and tests.

`codec` is pure (bytes in, bytes out, no Kafka).
"""

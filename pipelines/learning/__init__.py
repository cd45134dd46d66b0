"""The learning loop: confirmations from a labels topic retrain the model behind a promotion gate.

`labels` decodes confirmations (pure), `store` keeps them durably (SQLite), `reference`
holds the registry's reference normal windows, `gate` compares a candidate with the
current model, `ingest` moves the labels topic into the store, and `retrain` / `models`
are the `agad-stream` commands.
"""

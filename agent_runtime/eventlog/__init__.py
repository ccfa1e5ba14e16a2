"""Per-agent event logs: the contract (`base`), an in-memory backend (`memory`) and SQLite (`sqlite`)."""

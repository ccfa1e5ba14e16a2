"""agent_runtime: many LLM agent loops per machine, each an asyncio actor with its own SQLite event log."""

__version__ = "0.1.0"

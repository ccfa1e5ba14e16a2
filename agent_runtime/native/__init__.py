"""Typed façade over the compiled Rust core (`agent_runtime._native`).

Everything the runtime needs from the native core is imported from here, never from `_native`
directly, so the binding can change shape without touching callers.
"""

from agent_runtime._native import count_tokens

__all__ = ["count_tokens"]

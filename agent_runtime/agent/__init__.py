"""One agent's loop: the actor shell and the sans-IO decisions it drives.

`actor` (mailbox, lifecycle, commits) drives `turn` (the turn machine: inputs -> events, state ->
effect) over `state` (derived from events); `hub` fans its events out. Layers and the sans-IO
contract: `.importlinter`; the map: docs/architecture.md.
"""

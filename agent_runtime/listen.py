"""The address an aiohttp site actually listens on: with port 0 the kernel picks the port, and
callers (the standalone server, a shard, the router, the mock providers, tests) report or
advertise the one it bound. aiohttp has no public accessor for it; this is the one place that
reaches for it.
"""

from __future__ import annotations

from aiohttp import web


def bound_port(site: web.TCPSite, requested: int) -> int:
    """The port `site` (started) is bound to; `requested` when the server exposes no socket."""
    server = site._server  # noqa: SLF001 - aiohttp has no public accessor for the bound port
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else requested

"""The aiohttp shell in front of the host: WebSocket and HTTP.

`ws` (one `Connection` per attached client, its handler and the dispatch of its commands), `http`
(the REST handlers), `app` (`make_app`: routes, the errors middleware, shutdown) and `shared` (the
application's keys, who a request is, JSON answers). Errors are answered in the one shape of
`agent_runtime.errors`. The server talks to the `Host` only, never to an actor.
"""

from agent_runtime.server.app import make_app

__all__ = ["make_app"]

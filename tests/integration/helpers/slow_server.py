"""Run the standalone server exactly as `agentctl serve` does, but with a paced simulated model.

`agentctl serve` always uses the instant simulated model; the crash-recovery test needs turns that
last a few seconds so it can `kill -9` the process while they are in flight. This launcher builds
the same `ServerConfig` (real data dir, real SQLite files, real socket) with a slow
`SimulatedModelConfig`, binds port 0 by default, prints one machine-readable line

    READY <url> <admin-token-file-or-"-"> <agents>

on stdout once the server is accepting connections, and then runs until it is killed. SIGTERM and
SIGINT stop it gracefully (actors cancelled, snapshots written, logs closed, exit code 0).

Usage: python slow_server.py --data-dir D [--port 0] [--tokens-per-s 30] [--ttft 0.2]
                             [--idle-timeout 30] [--seed 0] [--insecure-no-auth] [--tool-read-path P]...
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from agent_runtime.agent.actor import ActorConfig
from agent_runtime.providers.simulated import SimulatedModelConfig
from agent_runtime.standalone import ServerConfig, serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tokens-per-s", type=float, default=30.0)
    p.add_argument("--ttft", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--idle-timeout", type=float, default=30.0)
    p.add_argument("--insecure-no-auth", action="store_true")
    p.add_argument("--tool-read-path", action="append", default=[], help="as `agentctl serve --tool-read-path`")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    config = ServerConfig(
        data_dir=Path(args.data_dir),
        host=args.host,
        port=args.port,
        auth=not args.insecure_no_auth,
        actor=ActorConfig(idle_timeout_s=args.idle_timeout, tool_read_paths=tuple(Path(p) for p in args.tool_read_path)),
        model=SimulatedModelConfig(seed=args.seed, tokens_per_s=args.tokens_per_s, ttft_s=args.ttft),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(config) as running:
        token_file = str(running.admin_token_file) if running.admin_token else "-"
        print(f"READY {running.url} {token_file} {len(running.host.handles)}", flush=True)
        await stop.wait()
    print("STOPPED", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

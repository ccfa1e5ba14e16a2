"""`python -m mock_providers [--port N] [--ttft-per-token S] ...`: serve the mocks until killed.

Prints one line `mock providers listening on http://127.0.0.1:PORT` once bound (the demo and the
benchmark start it as a subprocess and read that line).
"""

from __future__ import annotations

import argparse
import asyncio

from agent_runtime.providers.simulated import SimulatedModelConfig
from mock_providers.server import MockConfig, MockServer


async def _main(args: argparse.Namespace) -> None:
    model = SimulatedModelConfig(seed=args.seed, run_probability=args.run_probability)
    config = MockConfig(model=model, ttft_base_s=args.ttft_base, ttft_per_uncached_token_s=args.ttft_per_token,
                        event_interval_s=args.event_interval)
    async with MockServer(config, host=args.host, port=args.port) as server:
        print(f"mock providers listening on {server.url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mock_providers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-base", type=float, default=0.0)
    parser.add_argument("--ttft-per-token", type=float, default=0.0, help="seconds of TTFT per uncached prompt token")
    parser.add_argument("--event-interval", type=float, default=0.0, help="seconds between streamed events")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-probability", type=float, default=SimulatedModelConfig().run_probability)
    args = parser.parse_args()
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

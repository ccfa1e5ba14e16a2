"""`agentctl`: serve, apply, get, attach, send, logs, token, demo.

Client commands talk to a running server over its HTTP/WebSocket API; `serve` and `demo` run one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import uuid
from pathlib import Path

import orjson

from agent_runtime import layout
from agent_runtime.agent.actor import ActorConfig
from agent_runtime.cli.client import DEFAULT_SERVER, ApiError, Client, default_data_dir, find_token
from agent_runtime.cli.render import render_event
from agent_runtime.providers.registry import HTTP_PROVIDERS, ProviderSettings


def _client(args: argparse.Namespace) -> Client:
    import os

    server = args.server or os.environ.get("AGENTCTL_SERVER") or DEFAULT_SERVER
    return Client(server, find_token(args.token))


def _key(value: str) -> str:
    if value.count("/") == 0:
        return f"default/{value}"
    if value.count("/") != 1:
        raise argparse.ArgumentTypeError("expected NAMESPACE/NAME (or NAME for namespace 'default')")
    return value


def _provider_settings(args: argparse.Namespace) -> ProviderSettings:
    """Endpoints from the environment, overridden by `--base-url PROVIDER[@REGION]=URL` flags."""
    settings = ProviderSettings.from_env()
    for item in args.base_url or ():
        target, sep, url = item.partition("=")
        provider, _, region = target.partition("@")
        if not sep or provider not in HTTP_PROVIDERS or not url:
            raise SystemExit(f"agentctl serve: --base-url {item!r}: expected PROVIDER[@REGION]=URL, "
                             f"PROVIDER one of {', '.join(HTTP_PROVIDERS)}")
        settings = settings.with_base_url(provider, url, region or None)
    return settings


def _actor_config(args: argparse.Namespace) -> ActorConfig:
    return ActorConfig(
        idle_timeout_s=args.idle_timeout,
        tool_read_paths=tuple(args.tool_read_path or ()),
        tool_confinement_required=args.tool_confinement_required,
    )


def _refuse_readable_secrets(command: str, args: argparse.Namespace, data_dir: Path, secrets: list[Path]) -> None:
    """Exit (with why) when a secret of the runtime lies under a folder every shell tool call may
    read (/etc, /usr, /opt, the Python prefixes, `--tool-read-path`): any agent could `cat` it.
    A folder holding the data dir is not one (each call's policy drops it: it holds the workspace)."""
    from agent_runtime.tools.landlock import default_read_paths, readable_by_tools

    data = os.path.realpath(data_dir)
    read_paths = [p for p in default_read_paths(tuple(args.tool_read_path or ())) if readable_by_tools(data, [p]) is None]
    folder = os.environ.get("AGENT_RUNTIME_SECRETS_DIR")
    for secret in [*secrets, *([Path(folder)] if folder else [])]:
        under = readable_by_tools(secret, read_paths)
        if under is not None:
            raise SystemExit(f"agentctl {command}: {secret} is readable by every agent's shell tool calls (it is "
                             f"under {under}, which they may read): keep secrets outside {', '.join(read_paths)}")


def _absolute_path(value: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        raise argparse.ArgumentTypeError(f"{value!r}: expected an absolute path")
    return path


def _tool_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--tool-read-path", action="append", type=_absolute_path, metavar="PATH",
                   help="a folder tool processes may read and execute besides the workspace and the system "
                        "folders (repeatable; e.g. /nix)")
    s.add_argument("--tool-confinement-required", action="store_true",
                   help="refuse to run shell tool calls where Landlock is unavailable (default: run them "
                        "unconfined, with a warning)")


async def cmd_serve(args: argparse.Namespace) -> int:
    from agent_runtime.standalone import ServerConfig, serve_forever

    _refuse_readable_secrets("serve", args, Path(args.data_dir), [layout.admin_token_file(Path(args.data_dir))])
    config = ServerConfig(
        data_dir=Path(args.data_dir), host=args.host, port=args.port,
        manifests=Path(args.manifests) if args.manifests else None, auth=not args.insecure_no_auth,
        actor=_actor_config(args),
        providers=_provider_settings(args),
    )
    await serve_forever(config)
    return 0


async def cmd_apply(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    async with _client(args) as client:
        result = await client.apply(text)
    for item in result["applied"]:
        print(f"agent/{item['agent']} {'created' if item['created'] else 'configured'}")
    return 0


async def cmd_get(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        agents = await client.agents()
    if args.output == "json":
        print(orjson.dumps(agents, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'NAMESPACE':<12} {'NAME':<24} {'PHASE':<11} {'TURNS':>6} {'EVENTS':>7} {'TOKENS IN':>10} {'TOKENS OUT':>10}")
    for a in agents:
        tokens = a.get("tokens") or {}
        print(f"{a['namespace']:<12} {a['name']:<24} {a['phase']:<11} {a.get('turns', '-'):>6} {a.get('seq', '-'):>7} "
              f"{tokens.get('input', '-'):>10} {tokens.get('output', '-'):>10}")
    return 0


async def cmd_send(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        result = await client.send(args.agent, args.id or uuid.uuid4().hex, args.text)
    print(f"acknowledged at seq {result['seq']}{' (duplicate)' if result['duplicate'] else ''}")
    return 0


async def cmd_logs(args: argparse.Namespace) -> int:
    color = sys.stdout.isatty() and not args.no_color
    async with _client(args) as client:
        after = args.after
        while True:
            page = await client.events(args.agent, after=after, limit=min(args.limit or 1000, 1000))
            for frame in page["events"]:
                if args.output == "json":
                    print(orjson.dumps(frame).decode())
                else:
                    line = render_event(frame, color)
                    if line:
                        print(line)
                after = frame["seq"]
            if not page["events"] or after >= page["head"] or (args.limit and after - args.after >= args.limit):
                return 0


async def cmd_attach(args: argparse.Namespace) -> int:
    """Live view; each stdin line is sent as a user message. Ctrl-C (or EOF) leaves; the agent keeps running."""
    color = sys.stdout.isatty() and not args.no_color
    async with _client(args) as client:
        ws = await client.connect(args.agent)
        await ws.send_str(orjson.dumps({"type": "hello", "cursor": args.cursor}).decode())
        streaming: str | None = None

        async def read_stdin() -> None:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            while line := await reader.readline():
                text = line.decode().rstrip("\n")
                if text == "/interrupt":
                    await ws.send_str('{"type":"interrupt"}')
                elif text:
                    await ws.send_str(orjson.dumps({"type": "user_message", "id": uuid.uuid4().hex, "text": text}).decode())

        stdin_task = asyncio.create_task(read_stdin()) if not args.no_input else None
        try:
            async for msg in ws:
                frame = orjson.loads(msg.data)
                t = frame.get("type")
                if t == "welcome":
                    print(f"attached to {frame['agent']} as {frame['role']} (head {frame['head']}); "
                          "type to send, /interrupt to stop the turn, Ctrl-C to leave", flush=True)
                elif t == "delta":
                    if streaming != frame["message_id"]:
                        streaming = frame["message_id"]
                        print("        agent ", end="")
                    print(frame["text"], end="", flush=True)
                elif t == "event":
                    was_streaming = streaming is not None and frame["kind"] == "assistant_message"
                    if streaming is not None:
                        print()
                        streaming = None
                    line = render_event(frame, color, streamed=was_streaming)
                    if line:
                        print(line, flush=True)
                elif t == "error":
                    print(f"error {frame['code']}: {frame['message']}", file=sys.stderr, flush=True)
        finally:
            if stdin_task is not None:
                stdin_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stdin_task
            await ws.close()
    return 0


async def cmd_token(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        result = await client.create_token(args.role, args.namespace, args.agent)
    print(result["token"])
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from agent_runtime.cli.demo import DemoConfig, run_demo

    return await run_demo(DemoConfig(agents=args.agents, duration_s=args.duration,
                                     data_dir=Path(args.data_dir) if args.data_dir else None))


def _env(name: str, default: str | None = None) -> str | None:
    import os

    return os.environ.get(f"AGENT_RUNTIME_{name}", default)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host or "0.0.0.0", int(port)


async def cmd_shard(args: argparse.Namespace) -> int:
    from agent_runtime.kube.shard import ShardConfig, serve_shard
    from agent_runtime.standalone import ServerConfig

    missing = [n for n in ("namespace", "pool", "shard", "data") if not getattr(args, n)]
    if missing:
        print(f"agentctl shard: missing --{' --'.join(missing)} (or AGENT_RUNTIME_* env vars)", file=sys.stderr)
        return 2
    host, port = _host_port(args.listen)
    _refuse_readable_secrets("shard", args, Path(args.data), [Path(args.admin_token_file or layout.admin_token_file(Path(args.data)))])
    server = ServerConfig(
        data_dir=Path(args.data), host=host, port=port,
        admin_token_file=Path(args.admin_token_file) if args.admin_token_file else None, actor=_actor_config(args),
    )
    config = ShardConfig(
        namespace=args.namespace, pool=args.pool, shard=args.shard, server=server, advertise=args.advertise,
        lease_duration_s=args.lease_duration, status_rate=args.status_rate, arrival_rate=args.arrival_rate,
    )
    await serve_shard(config, args.kubeconfig)
    return 0


async def cmd_router(args: argparse.Namespace) -> int:
    from agent_runtime.kube.router import RouterConfig, serve_router

    host, port = _host_port(args.listen)
    await serve_router(RouterConfig(host, port, tuple(args.namespace or ())), args.kubeconfig)
    return 0


async def cmd_drain(args: argparse.Namespace) -> int:
    from agent_runtime.kube.client import NotFound, connect, leases_path
    from agent_runtime.kube.names import DRAINING_ANNOTATION

    async with connect(args.kubeconfig) as kube:
        try:
            await kube.merge_patch(leases_path(args.namespace, args.shard),
                                   {"metadata": {"annotations": {DRAINING_ANNOTATION: "true"}}})
        except NotFound:
            print(f"agentctl: no Lease {args.namespace}/{args.shard} (is the shard running?)", file=sys.stderr)
            return 1
    print(f"shard {args.namespace}/{args.shard} draining: its agents move to the pool's other shards")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentctl", description="Run and talk to LLM agents.")
    p.add_argument("--server", help=f"runtime URL (default $AGENTCTL_SERVER or {DEFAULT_SERVER})")
    p.add_argument("--token", help="bearer token (default $AGENTCTL_TOKEN or the local admin token)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the standalone server")
    s.add_argument("--data-dir", default=str(default_data_dir()))
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8470)
    s.add_argument("--manifests", help="folder of Agent manifests to load at start")
    s.add_argument("--idle-timeout", type=float, default=30.0, help="seconds before an idle agent hibernates")
    s.add_argument("--insecure-no-auth", action="store_true", help="turn authentication OFF (anyone is admin)")
    s.add_argument("--base-url", action="append", metavar="PROVIDER[@REGION]=URL",
                   help="endpoint of a provider API (repeatable); API keys come from the environment or "
                        "AGENT_RUNTIME_SECRETS_DIR, never from flags")
    _tool_flags(s)
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("apply", help="create or update agents from a manifest file")
    s.add_argument("-f", "--file", required=True, help="YAML file ('-' for stdin)")
    s.set_defaults(fn=cmd_apply)

    s = sub.add_parser("get", help="list agents")
    s.add_argument("what", choices=["agents"])
    s.add_argument("-o", "--output", choices=["table", "json"], default="table")
    s.set_defaults(fn=cmd_get)

    s = sub.add_parser("attach", help="live view of an agent; type to send")
    s.add_argument("agent", type=_key, help="NAMESPACE/NAME")
    s.add_argument("--cursor", type=int, default=0, help="replay events after this seq")
    s.add_argument("--no-input", action="store_true", help="watch only")
    s.add_argument("--no-color", action="store_true")
    s.set_defaults(fn=cmd_attach)

    s = sub.add_parser("send", help="send one user message")
    s.add_argument("agent", type=_key)
    s.add_argument("text")
    s.add_argument("--id", help="client message id (idempotency key; default random)")
    s.set_defaults(fn=cmd_send)

    s = sub.add_parser("logs", help="print an agent's events by range")
    s.add_argument("agent", type=_key)
    s.add_argument("--after", type=int, default=0)
    s.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.add_argument("--no-color", action="store_true")
    s.set_defaults(fn=cmd_logs)

    s = sub.add_parser("token", help="create a token (admin)")
    s.add_argument("--role", choices=["viewer", "operator", "admin"], required=True)
    s.add_argument("--namespace")
    s.add_argument("--agent", help="agent name (needs --namespace)")
    s.set_defaults(fn=cmd_token)

    s = sub.add_parser("demo", help="run many agents on the simulated model with a live view")
    s.add_argument("--agents", type=int, default=200)
    s.add_argument("--duration", type=float, default=60.0, help="seconds")
    s.add_argument("--data-dir", help="where to keep the demo's agents (default: a new folder under ./var)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("shard", help="run one shard of a RuntimePool (Kubernetes mode)")
    s.add_argument("--namespace", default=_env("NAMESPACE"))
    s.add_argument("--pool", default=_env("POOL"))
    s.add_argument("--shard", default=_env("SHARD"), help="shard name = the StatefulSet pod name")
    s.add_argument("--data", default=_env("DATA"), help="the pool's shared data volume")
    s.add_argument("--listen", default=_env("LISTEN", "0.0.0.0:8470"), help="HOST:PORT (port 0: any)")
    s.add_argument("--advertise", default=_env("ADVERTISE"), help="base URL the router uses (default: the bound address)")
    s.add_argument("--kubeconfig", help="default $KUBECONFIG, else the in-cluster service account")
    s.add_argument("--lease-duration", type=int, default=int(_env("LEASE_DURATION", "15") or 15))
    s.add_argument("--status-rate", type=float, default=float(_env("STATUS_RATE", "20") or 20),
                   help="most Agent status patches per second from this shard")
    s.add_argument("--arrival-rate", type=float, default=float(_env("STATUS_ARRIVAL_RATE", "50") or 50),
                   help="most first reports per second of agents that arrived (placement, a drain): their own budget")
    s.add_argument("--admin-token-file", default=_env("ADMIN_TOKEN_FILE"), help="default <data>/admin.token")
    s.add_argument("--idle-timeout", type=float, default=30.0, help="seconds before an idle agent hibernates")
    _tool_flags(s)
    s.set_defaults(fn=cmd_shard)

    s = sub.add_parser("router", help="route /v1/agents/{ns}/{name}/... to the owning shard (Kubernetes mode)")
    s.add_argument("--listen", default=_env("ROUTER_LISTEN", "0.0.0.0:8480"), help="HOST:PORT")
    s.add_argument("--namespace", action="append", help="watch only this namespace (repeatable; default all)")
    s.add_argument("--kubeconfig")
    s.set_defaults(fn=cmd_router)

    s = sub.add_parser("drain", help="drain a shard: its agents move to the pool's other shards")
    s.add_argument("shard")
    s.add_argument("--namespace", required=True)
    s.add_argument("--kubeconfig")
    s.set_defaults(fn=cmd_drain)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = asyncio.run(args.fn(args))
        return code
    except KeyboardInterrupt:
        return 130
    except ApiError as exc:
        print(f"agentctl: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"agentctl: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

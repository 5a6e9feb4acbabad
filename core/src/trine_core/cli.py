"""``trine``: run one or more roles in this process until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from trine_core.errors import TrineError
from trine_core.logging import configure_logging
from trine_core.runtime import Runtime
from trine_core.settings import Settings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trine",
        description="trine, a durable execution runtime. Settings come from flags, then TRINE_* "
        "environment variables, then the config file, then defaults.",
    )
    p.add_argument(
        "--target",
        help="roles to run here: all (default), engine, coordinator, gateway, or a comma list",
    )
    p.add_argument("--config", type=Path, help="a TOML config file (env: TRINE_CONFIG)")
    p.add_argument("--data-dir", help="engine database folder (default .trine/data)")
    p.add_argument("--http-addr", help="gateway HTTP address (default 127.0.0.1:7480)")
    p.add_argument("--worker-addr", help="coordinator address for workers (default 127.0.0.1:7481)")
    p.add_argument("--engine-addr", help="engine gRPC address (default 127.0.0.1:7482)")
    p.add_argument("--max-payload-bytes", type=int, help="largest input or result (default 1 MiB)")
    p.add_argument(
        "--connect",
        action="append",
        metavar="NEED=ADDRESS",
        help="dial a need at an address, e.g. backend=grpc://10.0.0.5:7482 (repeatable)",
    )
    p.add_argument("--log-level", help="debug, info (default), warning, error")
    p.add_argument("--log-format", choices=["auto", "console", "json"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        connect = dict(_pair(item) for item in args.connect or [])
        flags = {k: v for k, v in vars(args).items() if k not in ("config", "connect")}
        settings = Settings.load(flags | {"connect": connect}, config_file=args.config)
        configure_logging(settings.log_level, settings.log_format)
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(_serve(settings))
    except TrineError as exc:
        print(f"trine: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (it comes with the gateway's uvicorn[standard]):
    the runtime spends a good part of its time in the event loop itself."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _pair(item: str) -> tuple[str, str]:
    need, sep, address = item.partition("=")
    if not sep:
        raise TrineError(f"--connect {item!r}: expected NEED=ADDRESS")
    return need.strip(), address.strip()


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Runtime(settings).run_until(stop)


if __name__ == "__main__":
    sys.exit(main())

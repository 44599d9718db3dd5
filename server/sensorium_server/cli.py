"""``sensorium-server``: parse settings, configure logging, serve."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from sensorium_server.errors import StartupError
from sensorium_server.settings import parse_settings

EXTRA = "pip install 'sensorium-serve[server]' (or [gpu] for CUDA)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 after a clean drain)."""
    settings = parse_settings(argv)
    try:
        from sensorium_server.gate import CallerFilter
        from sensorium_server.server import serve
    except ModuleNotFoundError as err:  # a client-only install
        missing = (err.name or "a server dependency").split(".")[0]
        print(f"sensorium-server: {missing} is not installed; {EXTRA}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(caller)s]: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(CallerFilter())
    try:
        return asyncio.run(serve(settings))
    except StartupError as err:
        print(f"sensorium-server: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

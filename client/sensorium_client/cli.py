"""``client``: the command line of sensorium-serve's client side."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from sensorium_client import __version__
from sensorium_client.commands import add_server_commands
from sensorium_client.connection import default_target
from sensorium_client.errors import SensoriumError
from sensorium_client.scoring.command import add_score_command
from sensorium_data import DataFormatError, find_sessions


def _inspect(args: argparse.Namespace) -> int:
    faults = 0
    for path in args.paths:
        for session in find_sessions(path):
            summary = session.summary()
            if args.validate:
                problems = session.problems()
                summary["problems"] = problems
                faults += len(problems)
                for problem in problems:
                    print(f"client: {problem}", file=sys.stderr)
            print(json.dumps(summary))
    return 1 if faults else 0


def _error(args: argparse.Namespace, err: Exception, code: str, status: int) -> int:
    """One line on stderr; under --json, a JSON object on stdout as well."""
    print(f"client: {err}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": str(err), "code": code, "exit": status}))
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``client``."""
    parser = argparse.ArgumentParser(
        prog="client",
        description="Client of sensorium-serve: predict mouse V1 responses and score models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=default_target(),
        help="HOST:PORT of the server (env SENSORIUM_SERVER; default %(default)s)",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("SENSORIUM_TOKEN"),
        help="bearer token the server asks for (env SENSORIUM_TOKEN)",
    )
    common.add_argument("--tls", action="store_true", help="connect with TLS")
    common.add_argument(
        "--ca",
        metavar="PEM",
        help="CA certificate to trust for TLS (implies --tls; default: system)",
    )
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    common.add_argument("--timeout", type=float, default=30.0, help="deadline per call, s")
    add_server_commands(sub, common)
    add_score_command(sub, common)
    inspect = sub.add_parser(
        "inspect", help="summarise Sensorium 2023 session folders (trials per tier, neurons)"
    )
    inspect.add_argument("paths", nargs="+", help="session folders or folders of sessions")
    inspect.add_argument(
        "--json", action="store_true", help="JSON lines (the default output already is)"
    )
    inspect.add_argument(
        "--validate", action="store_true", help="also check every trial file's presence and shape"
    )
    inspect.set_defaults(run=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args))
    except DataFormatError as err:
        return _error(args, err, "DATA_FORMAT", 2)
    except SensoriumError as err:
        return _error(args, err, err.code.name if err.code else "INVALID_ARGUMENT", 1)
    except KeyboardInterrupt:
        print("client: interrupted; finished work is kept (client score --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Entry point of the `promptalias` command. Subcommands import their heavy modules lazily."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from promptalias import __version__
from promptalias.cli import operator_cmd, plugin_cmds, testbed_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptalias", description="Declarative MLflow prompt aliases on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"promptalias {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    operator_cmd.add_parser(subparsers)
    testbed_cmd.add_parser(subparsers)
    plugin_cmds.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

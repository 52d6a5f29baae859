"""Entry point of the `promptalias` command. Subcommands import their heavy modules lazily."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from promptalias import __version__
from promptalias.cli import demo_cmd, experiment_cmd, operator_cmd, plugin_cmds, testbed_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptalias", description="Declarative MLflow prompt aliases on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"promptalias {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    operator_cmd.add_parser(subparsers)
    demo_cmd.add_parser(subparsers)
    testbed_cmd.add_parser(subparsers)
    plugin_cmds.add_parser(subparsers)
    experiment_cmd.add_parser(subparsers)
    sidecar = subparsers.add_parser(
        "sidecar",
        help="watch projection ConfigMaps, write them to a directory, serve them on localhost",
        add_help=False,
    )
    sidecar.add_argument("sidecar_args", nargs=argparse.REMAINDER)
    sidecar.set_defaults(func=_sidecar)
    return parser


def _sidecar(args: argparse.Namespace) -> int:
    from promptalias.sidecar.main import main as sidecar_main

    code: int = sidecar_main(args.sidecar_args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sidecar"]:  # the sidecar owns its flags (and its --help)
        from promptalias.sidecar.main import main as sidecar_main

        sidecar_code: int = sidecar_main(argv[1:])
        return sidecar_code
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

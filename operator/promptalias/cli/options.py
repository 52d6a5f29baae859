"""The arguments every cluster command shares, and how a command gets its cluster.

`cluster_options` (--kubeconfig, --context, -n), `wait_options` (--timeout, --no-wait) and
`output_options` (-o) are argparse parents; `with_cluster` turns `command(args, cluster)` into an
argparse `func` that connects, runs, closes and reports failures as one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Final

from promptalias.cli.cluster import Cluster, connect
from promptalias.cli.errors import report

DEFAULT_WAIT_S: Final = 60.0

Command = Callable[[argparse.Namespace, Cluster], int]


def positive_version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("versions start at 1")
    return value


def seconds(text: str) -> float:
    """A timeout: plain seconds ("5") or a duration ("2m")."""
    from promptalias.api.duration import parse_duration

    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 60s, 2m)") from None


def cluster_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    common.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    common.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
    return common


def wait_options() -> argparse.ArgumentParser:
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout", type=seconds, default=DEFAULT_WAIT_S, help="how long to wait for the operator (60s)"
    )
    waiting.add_argument("--no-wait", action="store_true", help="return once the request is made")
    return waiting


def output_options() -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    return output


def mlflow_options(default_uri: str) -> argparse.ArgumentParser:
    """--registry-uri and the MLflow request --timeout, for the commands that read MLflow."""
    mlflow = argparse.ArgumentParser(add_help=False)
    mlflow.add_argument("--registry-uri", default=None, help=f"MLflow URL (default: {default_uri})")
    mlflow.add_argument("--timeout", type=seconds, default=10.0, help="MLflow request timeout (10s)")
    return mlflow


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    command: Command,
    *,
    parents: list[argparse.ArgumentParser],
    help: str,
    description: str | None = None,
    target: str | None = "name",
) -> argparse.ArgumentParser:
    """Register subcommand `name` that runs `command` on the cluster; `target` is its positional
    argument (the object's name), None for none."""
    parser = subparsers.add_parser(name, parents=parents, help=help, description=description)
    if target is not None:
        parser.add_argument(target)
    parser.set_defaults(func=with_cluster(command))
    return parser


def namespace_of(args: argparse.Namespace, cluster: Cluster) -> str:
    """-n, else the kubeconfig context's namespace."""
    return str(args.namespace or cluster.default_namespace)


def connect_to(args: argparse.Namespace) -> Cluster:
    return connect(args.kubeconfig, args.context)


def with_cluster(command: Command) -> Callable[[argparse.Namespace], int]:
    """An argparse `func` that runs `command` on the cluster of --kubeconfig/--context."""

    def run(args: argparse.Namespace) -> int:
        def body() -> int:
            cluster = connect_to(args)
            try:
                return command(args, cluster)
            finally:
                cluster.close()

        return report(body)

    return run

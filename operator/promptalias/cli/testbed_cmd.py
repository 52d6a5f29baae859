"""`promptalias testbed up|down|env|status`: the local control plane + MLflow, by hand."""

from __future__ import annotations

import argparse
import shlex
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("testbed", help="start/stop the local control plane + MLflow testbed")
    parser.add_argument("action", choices=["up", "down", "env", "status", "build"])
    parser.add_argument(
        "--node",
        action="store_true",
        help="with up/build: also a real node (containerd, kubelet, kube-scheduler, kube-proxy) and the "
        "images it runs, built without Docker (needs root; see docs/node.md)",
    )
    parser.set_defaults(func=run)


def _exports(state: dict[str, str]) -> str:
    bin_dir = state["kubectl"].rsplit("/", 1)[0]
    lines = [
        f"export KUBECONFIG={shlex.quote(state['kubeconfig'])}",
        f"export MLFLOW_TRACKING_URI={shlex.quote(state['mlflowUri'])}",
        f'export PATH={shlex.quote(bin_dir)}:"$PATH"',
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from promptalias.testbed import Testbed, TestbedError, detached_state, ensure_binaries, stop_detached

    try:
        if args.action == "build":
            binaries = ensure_binaries()
            if args.node:
                from promptalias.testbed.images import ensure_images
                from promptalias.testbed.node import ensure_host_packages
                from promptalias.testbed.nodebuild import ensure_node_binaries

                ensure_host_packages()
                ensure_node_binaries()
                for image in ensure_images().all():
                    print(f"# image {image.name}: {image.size_bytes / 1e6:.0f} MB", file=sys.stderr)
            print(binaries.bin_dir)
            return 0
        if args.action == "up":
            if detached_state() is not None:
                print("# a testbed is already running; its environment:", file=sys.stderr)
            else:
                bed = Testbed.start(detached=True, node=args.node)
                node = f", node {bed.node_ready_seconds}s to Ready" if bed.node is not None else ""
                print(
                    f"# testbed up: Kubernetes {bed.server_version}, MLflow {bed.mlflow_uri}{node}\n"
                    '# use it with:  eval "$(promptalias testbed env)"',
                    file=sys.stderr,
                )
            state = detached_state()
            assert state is not None
            print(_exports(state))
            return 0
        if args.action == "down":
            stopped = stop_detached()
            print("testbed stopped" if stopped else "no testbed was running", file=sys.stderr)
            return 0
        state = detached_state()
        if state is None:
            print("no testbed is running; start one with `promptalias testbed up`", file=sys.stderr)
            return 1
        if args.action == "env":
            print(_exports(state))
        else:
            for key, value in state.items():
                print(f"{key}: {value}")
        return 0
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

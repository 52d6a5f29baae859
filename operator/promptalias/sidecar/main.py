"""`promptalias sidecar`: watch projection ConfigMaps, write them atomically, serve them on localhost.

    promptalias sidecar --namespace NS --dir DIR --listen 127.0.0.1:8718 [--selector S | --names a,b]
                        [--notify-url URL | --notify-signal PID:SIG] [--from-dir MOUNTED_DIR]

Run directly with `python -m promptalias.sidecar.main ...`; `main(argv)` returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from promptalias.sidecar.app import DEFAULT_SELECTOR, Sidecar, SidecarConfig
from promptalias.sidecar.kubeconfig import KubeConfigError, load_connection
from promptalias.sidecar.notify import parse_signal_target

logger = logging.getLogger("promptalias.sidecar")


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptalias sidecar",
        description="Watch promptalias projection ConfigMaps, write them atomically into a directory "
        "(kubelet's ..data layout) and serve them on localhost HTTP with ETag and long-poll.",
    )
    parser.add_argument(
        "--namespace", "-n", help="namespace to watch (default: the pod's, or the kubeconfig's)"
    )
    parser.add_argument("--dir", dest="directory", help="directory to write <prompt>.<alias>.json files into")
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 8718), help="HOST:PORT for HTTP (127.0.0.1:8718)"
    )
    parser.add_argument(
        "--selector",
        default=DEFAULT_SELECTOR,
        help=f"label selector of the ConfigMaps to watch (default {DEFAULT_SELECTOR})",
    )
    parser.add_argument(
        "--names",
        default="",
        help="comma-separated ConfigMap names: one watch per name by field selector, so RBAC can grant "
        "get/list/watch on just these resourceNames (least privilege); --selector is not used then",
    )
    notify = parser.add_mutually_exclusive_group()
    notify.add_argument("--notify-url", help="POST {'changed': [files]} to this URL after changes")
    notify.add_argument("--notify-signal", help="PID:SIGNAL to send after changes (e.g. 1:HUP)")
    parser.add_argument(
        "--notify-debounce", type=_positive, default=0.25, help="quiet seconds before notifying (0.25)"
    )
    parser.add_argument(
        "--from-dir", help="file mode: follow this kubelet-mounted ConfigMap directory instead"
    )
    parser.add_argument("--poll-interval", type=_positive, default=0.5, help="file mode poll period (0.5 s)")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: current-context)")
    parser.add_argument(
        "--stale-after",
        type=_positive,
        default=120.0,
        help="/healthz fails after this many seconds without contact with the apiserver (120)",
    )
    parser.add_argument(
        "--watch-timeout",
        type=int,
        help="seconds the apiserver keeps a watch open before we resume it (default: stale-after/2, max 300)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def config_from_args(args: argparse.Namespace) -> SidecarConfig:
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    config = SidecarConfig(
        namespace=args.namespace,
        directory=args.directory,
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        selector=args.selector,
        names=names,
        notify_url=args.notify_url,
        notify_signal=parse_signal_target(args.notify_signal) if args.notify_signal else None,
        notify_debounce=args.notify_debounce,
        from_dir=args.from_dir,
        poll_interval=args.poll_interval,
        stale_after=args.stale_after,
        watch_timeout=args.watch_timeout,
    )
    if not config.from_dir:
        if not config.directory:
            raise ValueError("--dir is required (or --from-dir for file mode)")
        config.connection = load_connection(args.kubeconfig, context=args.context)
        config.namespace = config.namespace or config.connection.namespace
        if not config.namespace:
            raise ValueError("--namespace is required outside a pod")
    return config


async def run(config: SidecarConfig) -> int:
    sidecar = Sidecar(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await sidecar.start()
    except OSError as exc:
        logger.error("cannot start: %s", exc)  # noqa: TRY400 -- e.g. address in use: no traceback needed
        await sidecar.stop()
        return 1
    await stop.wait()
    logger.info("stopping")
    await sidecar.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_from_args(args)
    except (ValueError, KubeConfigError) as exc:
        parser.error(str(exc))
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())

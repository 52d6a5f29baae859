"""`promptalias operator`: run the operator (out of cluster with KUBECONFIG, or in a pod)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import secrets
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("operator", help="run the promptalias operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch only this namespace (repeatable)"
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering", default=None, help="kopf peering name: replicas sharing it have one active"
    )
    peering.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    add = parser.add_argument
    add(
        "--health-listen",
        metavar="HOST:PORT",
        help="serve /healthz (liveness) on HOST:PORT, e.g. 127.0.0.1:8080 (the pod IP or 0.0.0.0 in a pod)",
    )
    add("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus /metrics on HOST:PORT")
    add("--webhook-listen", metavar="HOST:PORT", help="serve the sidecar-injection admission webhook (HTTPS)")
    add("--webhook-cert-dir", metavar="DIR", help="directory with tls.crt and tls.key for --webhook-listen")
    add(
        "--mlflow-webhook-listen",
        metavar="HOST:PORT",
        help="receive MLflow prompt-alias webhooks on HOST:PORT, e.g. 127.0.0.1:8719 "
        "(plain HTTP: put TLS in front)",
    )
    add("--mlflow-webhook-url", metavar="URL", help="the URL MLflow calls to reach --mlflow-webhook-listen")
    add(
        "--namespace-selector",
        metavar="SELECTOR",
        help="serve only namespaces whose labels match, e.g. team=ml",
    )
    add("--priority", type=int, help="kopf peering priority (default: random, so that replicas differ)")
    add("--peering-lifetime", type=int, default=60, help="seconds a silent peer counts as alive (default 60)")
    add("--cluster-id", help="identity written into MLflow owner tags (default: uid of kube-system)")
    add(
        "--workers",
        type=int,
        help="PromptAlias passes run at once (default 8; each takes every due alias of one prompt)",
    )
    add("--log-format", choices=["text", "json"], default="text")
    add("--verbose", "-v", action="store_true")
    parser.set_defaults(func=run)


def _few_malloc_arenas() -> None:
    """glibc gives every thread that allocates its own malloc arena (up to 8 per core), and the
    operator's Kubernetes calls run in a pool of threads whose freed memory then stays spread over
    many arenas (docs/benchmarks.md, Scale). Two arenas serve an asyncio process well.
    MALLOC_ARENA_MAX, when set, wins; a libc without mallopt is left alone."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    m_arena_max = -8  # <malloc.h>
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(m_arena_max, 2)


def run(args: argparse.Namespace) -> int:
    import kopf

    _few_malloc_arenas()

    from promptalias.kube.client import load_configuration

    try:
        load_configuration()
    except Exception as exc:  # noqa: BLE001 - any config failure gets the same advice
        print(
            f"error: no usable Kubernetes credentials ({exc}); set KUBECONFIG (e.g. "
            '`eval "$(promptalias testbed env)"`) or run inside a pod with a ServiceAccount',
            file=sys.stderr,
        )
        return 2
    os.environ["PROMPTALIAS_WATCH_NAMESPACES"] = ",".join(args.namespace)
    for value, env in (
        (args.metrics_listen, "PROMPTALIAS_METRICS_LISTEN"),
        (args.namespace_selector, "PROMPTALIAS_NAMESPACE_SELECTOR"),
        (args.webhook_listen, "PROMPTALIAS_ADMISSION_LISTEN"),
        (args.webhook_cert_dir, "PROMPTALIAS_ADMISSION_CERT_DIR"),
        (args.mlflow_webhook_listen, "PROMPTALIAS_WEBHOOK_LISTEN"),
        (args.mlflow_webhook_url, "PROMPTALIAS_WEBHOOK_URL"),
    ):
        if value:
            os.environ[env] = value
    if args.cluster_id:
        os.environ["PROMPTALIAS_CLUSTER_ID"] = args.cluster_id
    if args.workers is not None:
        os.environ["PROMPTALIAS_WORKERS"] = str(args.workers)
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs every handler run at INFO ("Handler 'x' succeeded"): noise for raw-event handlers.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Imported only now: some handlers read the variables set above when they are registered.
    import promptalias.handlers  # noqa: F401 - registers the handlers

    liveness = f"http://{args.health_listen}/healthz" if args.health_listen else None
    # kopf pauses *every* peer when two share the highest priority, so replicas must differ: a
    # random priority makes exactly one active; standbys take over when its keep-alive lapses.
    priority = args.priority if args.priority is not None else secrets.randbelow(2**31 - 2) + 1
    os.environ["PROMPTALIAS_PEERING_LIFETIME"] = str(args.peering_lifetime)
    if args.peering:
        os.environ["PROMPTALIAS_PEERING_NAME"] = args.peering
    kopf.run(
        priority=priority,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.standalone,
        peering_name=args.peering,
        liveness_endpoint=liveness,
    )
    return 0

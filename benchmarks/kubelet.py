"""An emulation of how kubelet refreshes a ConfigMap volume (no kubelet runs on the testbed).

    python -m benchmarks.kubelet --kubeconfig K --namespace NS --configmap NAME --dir DIR \
        [--sync-frequency 60] [--jitter 0.5] [--volume-loop 0.1]

What it reproduces (Kubernetes v1.35 defaults, pkg/kubelet):
- ConfigMap content comes from a watch-based cache (`configMapAndSecretChangeDetectionStrategy:
  Watch`, the default): a watch on the one object keeps the latest data in memory;
- a mounted ConfigMap is re-projected only when the pod is synced: the pod worker requeues each pod
  `wait.Jitter(syncFrequency, 0.5)` after its previous sync (`workerResyncIntervalJitterFactor`;
  `syncFrequency` default 1m), i.e. every 60-90 s;
- the sync marks the volume for remount, which the desired-state populator and the reconciler of the
  volume manager (each looping every 100 ms) carry out: up to two more 100 ms ticks;
- the files are written with kubelet's AtomicWriter layout (`..<timestamp>` dir, `..data` symlink
  renamed over, `<key> -> ..data/<key>`), and only when the content changed. The writer used here is
  promptalias' own implementation of that layout (promptalias.sidecar.atomic).
Each sync is logged to stderr as `sync <monotonic_ns> changed=<bool>`.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from typing import Any

from promptalias.sidecar.atomic import AtomicDirWriter


class WatchCache:
    """The latest `data` of one ConfigMap, kept by list + watch (relist on any error)."""

    def __init__(self, api: Any, namespace: str, name: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.data: dict[str, str] | None = None
        self.changed = threading.Event()

    def run(self) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api)
        selector = f"metadata.name={self.name}"
        while True:
            try:
                listed = core.list_namespaced_config_map(self.namespace, field_selector=selector)
                self._set(listed.items)
                stream = watch.Watch()
                for event in stream.stream(
                    core.list_namespaced_config_map,
                    self.namespace,
                    field_selector=selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=300,
                ):
                    obj = event["object"]
                    self._set([] if event["type"] == "DELETED" else [obj])
            except Exception as exc:  # noqa: BLE001 -- relist after any watch failure, as informers do
                print(f"watch failed ({exc!r}); relisting", file=sys.stderr, flush=True)
                time.sleep(1.0)

    def _set(self, items: list[Any]) -> None:
        self.data = dict(items[0].data or {}) if items else None
        self.changed.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.kubelet")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--configmap", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--sync-frequency", type=float, default=60.0)
    parser.add_argument("--jitter", type=float, default=0.5)
    parser.add_argument("--volume-loop", type=float, default=0.1)
    args = parser.parse_args(argv)

    from kubernetes import config

    api = config.new_client_from_config(config_file=args.kubeconfig)
    cache = WatchCache(api, args.namespace, args.configmap)
    threading.Thread(target=cache.run, name="watch", daemon=True).start()
    writer = AtomicDirWriter(args.dir)
    rng = random.Random()

    # Pod start: the volume is mounted once the ConfigMap is known.
    while cache.data is None:
        cache.changed.wait(1.0)
        cache.changed.clear()
    writer.write({k: v.encode() for k, v in cache.data.items()})
    print(f"mounted {time.monotonic_ns()}", file=sys.stderr, flush=True)
    while True:
        # wait.Jitter(d, f) = d + rand*f*d, counted from the end of the previous sync.
        time.sleep(args.sync_frequency * (1 + args.jitter * rng.random()))
        # Populator tick, then reconciler tick (both free-running loops of `--volume-loop` seconds).
        time.sleep(rng.random() * args.volume_loop + rng.random() * args.volume_loop)
        data = cache.data
        changed = data is not None and writer.write({k: v.encode() for k, v in data.items()})
        print(f"sync {time.monotonic_ns()} changed={changed}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)

"""`make soak`: a storm of spec.version changes under faults; does everything converge, is history whole?

    .venv/bin/python -m benchmarks.soak [--rounds 3] [--moves 40] [--kills 5] [--freezes 3] [--replicas 1|2]

One testbed (kube-apiserver, etcd, kube-controller-manager, `mlflow server`), one PromptAlias
(driftPolicy Enforce, historyLimit 100) and its operator(s). Each round patches spec.version
`--moves` times at random intervals while, at random moments, the (active) operator is SIGKILLed and
restarted, MLflow is frozen (SIGSTOP of its process group for 3-8 s, then SIGCONT) and once stopped
and started again. A thread polls MLflow's alias every 250 ms and records every version it holds.

After the last fault the round waits until MLflow, the status (Ready, resolvedVersion,
appliedVersion, no pendingMove) and the projection ConfigMap all show the last desired version, and
reports that convergence time. Then it checks history: one chain (each entry's previousVersion is
the version of the entry before), no entry twice, and every version MLflow was seen holding
appears, in order. With `--replicas 2` two operators share a KopfPeering and the active one is
the one killed. Results: bench-results/soak.json (and a table on stdout).

Not a test: timings depend on the machine. Failed checks are reported (exit code 1), not hidden.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.cluster import ALIASES, Kube, configmap_name, wait_until
from benchmarks.procs import REPO
from promptalias.testbed import Testbed

NAMESPACE = "promptalias-soak"
PROMPT = "soak-prompt"
ALIAS = "production"
VERSIONS = 8
PEERING = "soak"
MAX_MOVES = 90
# How often the watcher reads MLflow's alias. Not faster: a one-worker sqlite MLflow on a loaded
# machine saturates at a few tens of requests per second, and then the operator's own requests time
# out (20 ms made the operator spend most of a storm in backoff).
POLL_S = 0.25


def progress(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


class AliasWatcher(threading.Thread):
    """Polls MLflow's alias; `held` is every version seen, consecutive repeats collapsed."""

    def __init__(self, uri: str) -> None:
        super().__init__(name="alias-watcher", daemon=True)
        self.uri = uri
        self.held: list[int] = []
        self.stopped = threading.Event()

    def current(self) -> int | None:
        url = f"{self.uri}/api/2.0/mlflow/registered-models/get?name={PROMPT}"
        with urllib.request.urlopen(url, timeout=2) as response:
            model = json.loads(response.read())["registered_model"]
        for alias in model.get("aliases", []):
            if alias["alias"] == ALIAS:
                return int(alias["version"])
        return None

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                version = self.current()
            except OSError:
                version = None  # frozen or stopped: nothing new to see
            if version is not None and (not self.held or self.held[-1] != version):
                self.held.append(version)
            time.sleep(POLL_S)


class Operators:
    """One or two operator processes; `kill_active` SIGKILLs the one doing the work and restarts it."""

    def __init__(self, bed: Testbed, logs: Path, replicas: int) -> None:
        from promptalias.testbed.operator import OperatorProcess

        common: tuple[str, ...] = ("--namespace", NAMESPACE)
        if replicas > 1:
            common += ("--peering", PEERING, "--peering-lifetime", "4")
        self.procs = [
            OperatorProcess(
                bed,
                logs / f"operator-{i}.log",
                *common,
                *(("--priority", str(200 - 100 * i)) if replicas > 1 else ()),
            )
            for i in range(replicas)
        ]
        self.active = 0
        self.kills = 0

    def start(self) -> None:
        for proc in self.procs:
            proc.start(timeout=600)

    def kill_active(self, rng: random.Random) -> None:
        """SIGKILL the active replica (the highest priority one: it is active whenever it runs);
        the standby takes over until it is back, then hands over again."""
        victim = self.procs[self.active]
        victim.kill()
        self.kills += 1
        time.sleep(rng.uniform(0.2, 2.0))
        victim.start(timeout=600)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def freeze(bed: Testbed, seconds: float) -> None:
    server = bed.mlflow.server
    assert server is not None
    group = os.getpgid(server.pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.killpg(group, signal.SIGCONT)


def chain_problems(history: list[dict[str, Any]], held: list[int]) -> list[str]:
    problems = []
    for before, after in itertools.pairwise(history):
        if after.get("previousVersion") != before.get("version"):
            problems.append(f"broken chain: {before} then {after}")
    keys = [(h.get("previousVersion"), h.get("version"), h.get("time"), h.get("reason")) for h in history]
    if len(set(keys)) != len(keys):
        problems.append("an entry appears twice")
    versions = [h.get("version") for h in history]
    position = 0
    for version in held:  # every version MLflow held, in order, is a subsequence of history
        try:
            position = versions.index(version, position) + 1
        except ValueError:
            problems.append(
                f"MLflow held version {version} (seen order {held}) but history {versions} lacks it"
            )
            break
    return problems


def converged(kube: Kube, watcher: AliasWatcher, desired: int) -> bool:
    obj = kube.custom.get_namespaced_custom_object("promptalias.io", "v1alpha1", NAMESPACE, ALIASES, "soak")
    status = obj.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" and c.get("reason") == "Synced"
        for c in status.get("conditions") or []
    )
    return bool(
        ready
        and status.get("observedGeneration") == obj["metadata"]["generation"]
        and status.get("resolvedVersion") == desired
        and status.get("appliedVersion") == desired
        and "pendingMove" not in status
        and watcher.current() == desired
        and kube.projected_version(NAMESPACE, configmap_name("soak")) == desired
    )


def one_round(bed: Testbed, kube: Kube, args: argparse.Namespace, seed: int, logs: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    name = "soak"
    ops = Operators(bed, logs, args.replicas)
    if args.replicas > 1:
        bed.kubectl(
            "apply",
            "-f",
            "-",
            stdin=(
                "apiVersion: kopf.dev/v1\nkind: KopfPeering\n"
                f"metadata: {{name: {PEERING}, namespace: {NAMESPACE}}}\n"
            ),
        )
    ops.start()
    watcher = AliasWatcher(bed.mlflow_uri)
    try:
        kube.create_alias(NAMESPACE, name, "mlflow", PROMPT, ALIAS, 1)
        kube.custom.patch_namespaced_custom_object(
            "promptalias.io",
            "v1alpha1",
            NAMESPACE,
            ALIASES,
            name,
            {"spec": {"historyLimit": 100}},
            _content_type="application/merge-patch+json",
        )
        kube.wait_alias(NAMESPACE, name, 1, timeout=120)
        watcher.start()
        # Faults at random moments of the storm: kills, freezes, one stop/start of MLflow.
        storm_s = args.moves * 0.35
        faults: list[tuple[float, str]] = [(rng.uniform(0, storm_s), "kill") for _ in range(args.kills)]
        faults += [(rng.uniform(0, storm_s), "freeze") for _ in range(args.freezes)]
        faults.append((rng.uniform(0, storm_s), "stop"))
        faults.sort()
        fault_log: list[str] = []

        fault_errors: list[str] = []

        def inject() -> None:
            started = time.monotonic()
            for at, kind in faults:
                time.sleep(max(0.0, at - (time.monotonic() - started)))
                try:
                    if kind == "kill":
                        ops.kill_active(rng)
                    elif kind == "freeze":
                        freeze(bed, rng.uniform(3, 8))
                    else:
                        bed.mlflow.stop()
                        time.sleep(rng.uniform(1, 3))
                        bed.mlflow.start(timeout_s=600)  # a loaded machine starts MLflow slowly
                except Exception as exc:  # noqa: BLE001 -- reported with the round, not hidden
                    fault_errors.append(f"{kind}: {exc}")
                fault_log.append(f"{time.monotonic() - started:.1f}s {kind}")

        injector = threading.Thread(target=inject, name="faults", daemon=True)
        injector.start()
        desired = 1
        made = 0
        # At least --moves quick moves; then one every ~2 s while faults are still being injected
        # (at most MAX_MOVES in all, so the whole story fits historyLimit 100).
        while made < args.moves or (injector.is_alive() and made < MAX_MOVES):
            made += 1
            desired = rng.choice([v for v in range(1, VERSIONS + 1) if v != desired])
            for _attempt in range(50):  # the apiserver stays up; retry only its rare conflicts
                try:
                    kube.patch_version(NAMESPACE, name, desired)
                    break
                except Exception:  # noqa: BLE001
                    time.sleep(0.1)
            time.sleep(rng.uniform(0.05, 0.6) if made < args.moves else rng.uniform(1.0, 3.0))
        injector.join()
        last_fault = time.monotonic()
        not_converged: list[str] = []
        try:
            wait_until(
                lambda: converged(kube, watcher, desired), 300, f"convergence on version {desired}", 0.1
            )
        except RuntimeError as exc:  # reported with the round (with the status it ended in)
            ready = [
                c
                for c in kube.status(NAMESPACE, ALIASES, name).get("conditions") or []
                if c["type"] == "Ready"
            ]
            not_converged.append(f"{exc}; Ready: {ready[0].get('reason') if ready else None}")
        convergence = time.monotonic() - last_fault
        time.sleep(1.0)  # let the watcher see the final state once more
        watcher.stopped.set()
        watcher.join()
        history = kube.status(NAMESPACE, ALIASES, name).get("history") or []
        problems = chain_problems(history, watcher.held) + [f"fault failed: {e}" for e in fault_errors]
        problems += not_converged
        return {
            "seed": seed,
            "replicas": args.replicas,
            "moves": made,
            "kills": ops.kills,
            "faults": fault_log,
            "desired": desired,
            "convergence_s": round(convergence, 2),
            "history_entries": len(history),
            "mlflow_versions_seen": len(watcher.held),
            "problems": problems,
        }
    finally:
        watcher.stopped.set()
        # Delete while the operators run, so the finalizer completes; then stop them.
        kube.custom.delete_namespaced_custom_object("promptalias.io", "v1alpha1", NAMESPACE, ALIASES, name)
        try:
            wait_until(
                lambda: (
                    not kube.custom.list_namespaced_custom_object(
                        "promptalias.io", "v1alpha1", NAMESPACE, ALIASES
                    )["items"]
                ),
                120,
                "the soak PromptAlias to be deleted",
            )
        finally:
            ops.stop()


def _start_testbed(attempts: int = 3) -> Testbed:
    """Testbed.start, again when MLflow was too slow to start on a loaded machine (where MLflow may
    take minutes: the soak waits up to 10 minutes for each start instead of the testbed's 90 s)."""
    from promptalias.testbed.errors import TestbedError
    from promptalias.testbed.mlflowserver import MlflowServer

    original = MlflowServer.start

    def patient(self: MlflowServer, timeout_s: float = 600) -> None:
        original(self, max(timeout_s, 600))

    MlflowServer.start = patient  # type: ignore[method-assign]

    for attempt in range(1, attempts + 1):
        try:
            return Testbed.start()
        except TestbedError as exc:
            if attempt == attempts:
                raise
            progress(f"testbed start failed ({str(exc).splitlines()[0]}); trying again")
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("SOAK_ROUNDS", "3")))
    parser.add_argument("--moves", type=int, default=40)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--freezes", type=int, default=3)
    parser.add_argument("--replicas", type=int, choices=(1, 2), nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "soak.json")
    opts = parser.parse_args(argv)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    logs = opts.out.parent / "soak-logs"
    logs.mkdir(exist_ok=True)
    import mlflow.genai

    progress("starting the testbed")
    bed = _start_testbed()
    results: list[dict[str, Any]] = []
    try:
        os.environ["MLFLOW_TRACKING_URI"] = bed.mlflow_uri
        crds = str(REPO / "crds")
        bed.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=promptalias-soak", "-f", crds
        )
        bed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        kube = Kube(bed.kubeconfig)
        kube.create_namespace(NAMESPACE)
        kube.create_registry(NAMESPACE, "mlflow", {"trackingUri": bed.mlflow_uri, "refreshInterval": "2s"})
        for n in range(1, VERSIONS + 1):
            mlflow.genai.register_prompt(name=PROMPT, template=f"v{n}: {{{{text}}}}")
        rounds = [(replicas, i) for replicas in opts.replicas for i in range(opts.rounds)]
        for replicas, i in rounds:
            round_args = argparse.Namespace(**{**vars(opts), "replicas": replicas})
            seed = opts.seed + 1000 * replicas + i
            progress(f"round {i + 1}/{opts.rounds}, {replicas} replica(s), seed {seed}")
            result = one_round(bed, kube, round_args, seed, logs)
            results.append(result)
            opts.out.write_text(json.dumps({"rounds": results}, indent=2) + "\n")  # so far
            progress(
                f"  converged {result['convergence_s']} s after the last fault; "
                f"{result['history_entries']} history entries; problems: {result['problems'] or 'none'}"
            )
    finally:
        opts.out.write_text(json.dumps({"rounds": results}, indent=2) + "\n")
        bed.stop()
    print(
        "\n| replicas | seed | moves | kills | converged after last fault (s) | history entries | problems |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['replicas']} | {r['seed']} | {r['moves']} | {r['kills']} | {r['convergence_s']} | "
            f"{r['history_entries']} | {len(r['problems'])} |"
        )
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

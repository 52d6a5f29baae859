"""`make bench`: promptalias against its baselines, every comparison measured in the same run.

    .venv/bin/python -m benchmarks.run        (settings: BENCH_* environment variables, benchmarks/config.py)

One testbed (kube-apiserver + etcd + kube-controller-manager, two `mlflow server`s on sqlite, all
on 127.0.0.1) and one operator process serve every benchmark:

1. alias sync   CR patch -> alias committed in MLflow, beside bare set_prompt_alias and
                MlflowRegistry.set_alias (interleaved flip by flip);
2. propagation  alias change -> a separate reader process reads the new version: promptalias
                (operator -> ConfigMap -> sidecar -> client), stock mlflow.genai.load_prompt, and a
                kubelet-mounted ConfigMap: a real kubelet (a pod on the testbed's node, as root with
                PROMPTALIAS_NODE != 0), else the emulation (benchmarks/kubelet.py), the report says which;
3. follow mode  out-of-band set_prompt_alias -> app, with polling and with MLflow webhooks;
4. client       cached load_prompt, import time and peak RSS, in fresh processes.

The slow baselines (stock MLflow, kubelet) need about a minute per change: they run in background
threads while the fast benchmarks run, with readers that sleep between reads. Results go to
bench-results/: report.json (with every sample), report.md and PNG plots.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Generic, TypeVar

from benchmarks import client_bench, config, report, results, stages
from benchmarks.cluster import Kube, configmap_name, mlflow_webhooks, wait_until, webhook_receiver_counts
from benchmarks.config import ALIAS
from benchmarks.flips import Series, SyncTargets, measure_moves, measure_sync
from benchmarks.procs import REPO, Child, Observations, child_env, probe
from promptalias.stages import STAGE_LOG_ENV
from promptalias.testbed import MlflowServer, Testbed

T = TypeVar("T")

NAMESPACE = "promptalias-bench"
ROLES = ("sync", "floor", "ours", "stock", "kubelet", "follow", "webhook")
TEMPLATE = (
    "v{n}: You extract vendor, invoice date, total and currency from the invoice below and answer "
    "with JSON only.\n\nInvoice:\n{{{{invoice}}}}"
)
STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:5.0f}s] {message}", flush=True)


class Background(threading.Thread, Generic[T]):
    """Runs `body` in a thread; keeps its result or its exception for the main thread."""

    def __init__(self, name: str, body: Callable[[], T]) -> None:
        super().__init__(name=name, daemon=True)
        self.body = body
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.body()
        except BaseException as exc:  # noqa: BLE001 -- re-raised by the main thread
            self.error = exc

    def outcome(self) -> T:
        self.join()
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed: {self.error!r}") from self.error
        assert self.result is not None
        return self.result


class HttpWebhookMlflow(MlflowServer):
    """An MLflow server that may call http:// webhook URLs: the operator's receiver is plain HTTP on
    loopback here, and MLflow accepts only https:// webhook URLs by default."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"] = "http,https"
        return env


def git_commit() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "operator", "benchmarks") else "")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def observations(child: Child) -> Observations:
    assert child.observations is not None
    return child.observations


class Bench:
    """The run: its processes (all stopped by `stack`), the prompts, and the measurements."""

    def __init__(self, settings: config.Settings, stack: ExitStack, tmp: Path) -> None:
        self.settings = settings
        self.stack = stack
        self.tmp = tmp
        self.logs = settings.out / "logs"
        self.rng = random.Random()
        self.sync_flips: list[stages.Flip] = []  # counted CR flips, for the stage breakdown
        suffix = uuid.uuid4().hex[:6]
        self.prompts = {role: f"bench-{role}-{suffix}" for role in ROLES}
        self.uri = {role: f"prompts:/{name}@{ALIAS}" for role, name in self.prompts.items()}
        self.readers: list[Child] = []
        self.stop = threading.Event()
        self.background: list[Background[Series]] = []
        self.webhook_status = "registered"
        self.ttl = 0.0
        self.kubelet_source = {"mode": "emulated", "detail": "not started"}

    # ---- setup -----------------------------------------------------------------------------------

    def start_servers(self) -> None:
        from promptalias.testbed.operator import OperatorProcess
        from promptalias.testbed.ports import free_port

        self.bed = bed = self.start_testbed()
        self.stack.callback(bed.stop)
        os.environ["MLFLOW_TRACKING_URI"] = bed.mlflow_uri
        crds = str(REPO / "crds")
        bed.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=promptalias-bench", "-f", crds
        )
        bed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)

        self.hook_port = free_port()
        progress("starting the operator (with its MLflow webhook receiver) and a second MLflow server")
        self.operator = OperatorProcess(
            bed,
            self.logs / "operator.log",
            f"--mlflow-webhook-listen=127.0.0.1:{self.hook_port}",
            f"--mlflow-webhook-url=http://127.0.0.1:{self.hook_port}/mlflow/webhook",
            env={"MLFLOW_DISABLE_TELEMETRY": "true", STAGE_LOG_ENV: "1"},
        )
        self.stack.callback(self.operator.stop)
        # The operator waits for its /healthz in a thread while this thread starts MLflow #2 (servers
        # started from the main thread are tied to it with PR_SET_PDEATHSIG). MLflow #2 serves only
        # the webhook benchmark, so its webhook deliveries touch no other measurement.
        operator_start = Background("operator start", self.operator.start)
        operator_start.start()
        self.mlflow2 = HttpWebhookMlflow(bed.run_dir / "mlflow-webhooks", tied=True)
        bed.extra_mlflows.append(self.mlflow2)  # bed.stop() stops it
        self.mlflow2.start()
        operator_start.join()
        if operator_start.error is not None:
            raise operator_start.error

    def start_testbed(self) -> Testbed:
        """With a real node when this machine can run one (the kubelet baseline), else without."""
        from promptalias.testbed import TestbedError
        from promptalias.testbed.build import K8S_VERSION

        if os.environ.get("PROMPTALIAS_NODE", "1") == "0":
            reason = "PROMPTALIAS_NODE=0"
        elif os.geteuid() != 0:
            reason = "not root: a node needs containerd, kubelet and iptables"
        else:
            progress("starting the testbed with a node (kubelet, containerd, kube-proxy, CoreDNS) and MLflow")
            try:
                bed = Testbed.start(node=True, node_wait_s=1800)
            except TestbedError as exc:
                reason = f"the node did not start: {str(exc).splitlines()[0]}"
                progress(f"falling back to the kubelet emulation: {reason}")
            else:
                self.kubelet_source = {
                    "mode": "real",
                    "detail": f"kubelet {K8S_VERSION} on node promptalias-node",
                }
                return bed
        self.kubelet_source = {"mode": "emulated", "detail": reason}
        progress(f"starting the testbed (kube-apiserver, etcd, kube-controller-manager, MLflow); {reason}")
        return Testbed.start()

    def create_resources(self) -> None:
        import mlflow.genai

        from promptalias.registry.testing import client, register_prompt_versions

        bed, p = self.bed, self.prompts
        self.kube = kube = Kube(bed.kubeconfig)
        self.stack.callback(kube.close)
        kube.create_namespace(NAMESPACE)
        kube.create_registry(
            NAMESPACE,
            "mlflow",
            {"trackingUri": bed.mlflow_uri, "refreshInterval": self.settings.follow_refresh},
        )
        kube.create_secret(NAMESPACE, "mlflow-webhook", {"secret": uuid.uuid4().hex})
        webhook = {"enabled": True, "secretRef": {"name": "mlflow-webhook"}}
        kube.create_registry(
            NAMESPACE, "mlflow-webhooks", {"trackingUri": self.mlflow2.uri, "webhook": webhook}
        )
        kube.wait_registry_ready(NAMESPACE, "mlflow")
        kube.wait_registry_ready(NAMESPACE, "mlflow-webhooks")
        # MLflow caches its webhook list per event type for 60 s: the webhook must exist before the
        # first prompt_alias event on that server, or deliveries would start a minute later.
        try:
            wait_until(
                lambda: [
                    w
                    for w in mlflow_webhooks(self.mlflow2.uri)
                    if w.get("name", "").startswith("promptalias-")
                ],
                60,
                "the operator to register its MLflow webhook",
                interval=0.2,
            )
            progress("the operator registered its webhook in MLflow #2")
        except RuntimeError as exc:
            self.webhook_status = f"not registered ({exc}; see bench-results/logs/operator.log)"
            progress(f"MLflow webhook {self.webhook_status}")

        progress("registering prompt versions 1-3; initial aliases at version 2")
        templates = [TEMPLATE.format(n=n) for n in (1, 2, 3)]
        for role in ROLES:
            register_prompt_versions(
                self.mlflow2.uri if role == "webhook" else bed.mlflow_uri, p[role], templates
            )
        for role in ("floor", "ours", "stock", "follow"):
            mlflow.genai.set_prompt_alias(p[role], alias=ALIAS, version=2)
        self.mlflow2_client = client(self.mlflow2.uri)
        self.mlflow2_client.set_prompt_alias(p["webhook"], ALIAS, 2)
        kube.create_alias(NAMESPACE, "sync", "mlflow", p["sync"], ALIAS, 2)
        kube.create_alias(NAMESPACE, "kubelet", "mlflow", p["kubelet"], ALIAS, 2)
        kube.create_alias(NAMESPACE, "follow", "mlflow", p["follow"], ALIAS, None)
        kube.create_alias(NAMESPACE, "webhook", "mlflow-webhooks", p["webhook"], ALIAS, None)
        for name in ("sync", "kubelet", "follow", "webhook"):
            kube.wait_alias(NAMESPACE, name, 2)
        progress("4 PromptAliases Ready at version 2, projections written")

    def _start(self, child: Child) -> Child:
        child.start()
        self.stack.callback(child.stop)
        if child.observations is not None:
            self.readers.append(child)
        return child

    def _sidecar_reader(
        self, name: str, sidecar_args: list[str], uris: list[str]
    ) -> tuple[Path, Observations]:
        """A sidecar writing into a directory of its own, and a reader process configured like an
        injected pod (files + sidecar URL) that reads `uris` through it."""
        from promptalias.sidecar.testing import SidecarProcess

        directory = self.tmp / name
        sidecar = SidecarProcess(
            ["--namespace", NAMESPACE, "--dir", str(directory), *sidecar_args],
            env={"KUBECONFIG": str(self.bed.kubeconfig), STAGE_LOG_ENV: "1"},
            log=self.logs / f"{name}.log",
        )
        sidecar.start()
        self.stack.callback(sidecar.stop)
        sidecar.wait_ready()
        env = child_env(
            {
                "PROMPTALIAS_PROMPTS_DIR": str(directory),
                "PROMPTALIAS_SIDECAR_URL": sidecar.url,
                "PROMPTALIAS_CACHE_DIR": str(self.tmp / f"client-cache-{name}"),
            },
            drop=("MLFLOW_TRACKING_URI",),
        )
        args = ["client", str(self.settings.read_interval_s), *uris]
        reader = probe(f"promptalias-reader-{name}", args, self.logs, env=env)
        return directory, observations(self._start(reader))

    def start_observers(self) -> None:
        s, bed, uri = self.settings, self.bed, self.uri
        names = ",".join(configmap_name(n) for n in ("sync", "follow", "webhook"))
        self.sidecar_dir, self.app = self._sidecar_reader(
            "sidecar", ["--names", names], [uri["sync"], uri["follow"], uri["webhook"]]
        )
        # The sidecar's default mode: one watch of every projection of the namespace (no --names).
        _, self.app_namespace = self._sidecar_reader("sidecar-namespace", [], [uri["sync"]])
        db = str(bed.mlflow.run_dir / "mlflow.db")
        self.commits = observations(self._start(probe("mlflow-commits", ["commit", db], self.logs)))
        stock_args = ["mlflow", str(s.slow_read_interval_s), uri["stock"]]
        stock_env = child_env({"MLFLOW_TRACKING_URI": bed.mlflow_uri})
        self.stock = observations(
            self._start(probe("stock-mlflow-reader", stock_args, self.logs, env=stock_env))
        )

        if self.kubelet_source["mode"] == "real":
            self.kubelet_file = self.start_kubelet_pod()
        else:
            self.kubelet_file = self.start_kubelet_emulator()
        file_args = ["file", str(s.slow_read_interval_s), str(self.kubelet_file)]
        self.kubelet = observations(self._start(probe("kubelet-file-reader", file_args, self.logs)))
        for child in self.readers:
            child.wait_ready()
        progress(f"sidecar, readers, commit probe and the {self.kubelet_source['mode']} kubelet ready")

    def start_kubelet_pod(self) -> Path:
        """A pod on the real node that mounts the kubelet PromptAlias' projection as a volume; the
        reader follows the file kubelet writes there (the same tmpfs the container sees)."""
        from promptalias.testbed.node import PAUSE_IMAGE

        bed = self.bed
        assert bed.node is not None
        pod = f"""
apiVersion: v1
kind: Pod
metadata: {{name: kubelet-baseline, namespace: {NAMESPACE}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
    - name: app
      image: {PAUSE_IMAGE}
      imagePullPolicy: Never
      volumeMounts: [{{name: prompts, mountPath: /var/run/prompts, readOnly: true}}]
  volumes:
    - name: prompts
      configMap: {{name: {configmap_name("kubelet")}}}
"""
        bed.kubectl("apply", "-f", "-", stdin=pod)
        bed.kubectl(
            "wait", "-n", NAMESPACE, "pod/kubelet-baseline", "--for=condition=Ready", "--timeout=300s"
        )
        uid = bed.kubectl(
            "get", "pod", "-n", NAMESPACE, "kubelet-baseline", "-o", "jsonpath={.metadata.uid}"
        ).stdout
        volume = (
            bed.node.node_dir
            / "kubelet"
            / "pods"
            / uid.strip()
            / "volumes"
            / "kubernetes.io~configmap"
            / "prompts"
        )
        path = volume / f"{self.prompts['kubelet']}.{ALIAS}.json"
        wait_until(path.exists, 120, "kubelet to mount the ConfigMap volume", interval=0.1)
        progress(f"kubelet mounted the ConfigMap into pod kubelet-baseline ({volume})")
        return path

    def start_kubelet_emulator(self) -> Path:
        s, bed = self.settings, self.bed
        kubelet_dir = self.tmp / "kubelet-volume"
        emulator = [
            sys.executable,
            "-m",
            "benchmarks.kubelet",
            f"--kubeconfig={bed.kubeconfig}",
            f"--namespace={NAMESPACE}",
            f"--configmap={configmap_name('kubelet')}",
            f"--dir={kubelet_dir}",
            f"--sync-frequency={s.kubelet_sync_s}",
            f"--jitter={s.kubelet_jitter}",
        ]
        self._start(Child("kubelet-emulator", emulator, self.logs / "kubelet-emulator.log"))
        path = kubelet_dir / f"{self.prompts['kubelet']}.{ALIAS}.json"
        wait_until(path.exists, 60, "the emulated kubelet to mount the ConfigMap", interval=0.1)
        return path

    def stop_background(self) -> None:
        self.stop.set()
        for child in self.readers:
            observations(child).cancel()
        for thread in self.background:
            thread.join(timeout=30)

    # ---- measurements ----------------------------------------------------------------------------

    def start_slow_baselines(self) -> None:
        """Stock MLflow and the emulated kubelet: each change waits for a cache or sync period."""
        import mlflow.genai
        from mlflow.environment_variables import MLFLOW_ALIAS_PROMPT_CACHE_TTL_SECONDS

        s = self.settings
        self.ttl = ttl = float(MLFLOW_ALIAS_PROMPT_CACHE_TTL_SECONDS.get())
        kube = Kube(self.bed.kubeconfig)  # its own connection pool: this runs in another thread
        self.stack.callback(kube.close)
        period_max = s.kubelet_sync_s * (1 + s.kubelet_jitter)

        def stock() -> Series:
            return measure_moves(
                "stock mlflow.genai.load_prompt",
                lambda v: mlflow.genai.set_prompt_alias(self.prompts["stock"], alias=ALIAS, version=v),
                self.stock,
                self.uri["stock"],
                flips=s.stock_flips,
                warmup=0,
                gap=lambda: self.rng.uniform(0, ttl),
                timeout=2 * ttl + 60,
                progress=progress,
                stop=self.stop,
                verbose=True,
            )

        def kubelet() -> Series:
            return measure_moves(
                f"kubelet-mounted ConfigMap ({self.kubelet_source['mode']})",
                lambda v: kube.patch_version(NAMESPACE, "kubelet", v),
                self.kubelet,
                str(self.kubelet_file),
                flips=s.kubelet_flips,
                warmup=0,
                gap=lambda: self.rng.uniform(0, s.kubelet_sync_s),
                timeout=2 * period_max + 60,
                progress=progress,
                stop=self.stop,
                verbose=True,
            )

        self.background = [
            Background("stock MLflow baseline", stock),
            Background("kubelet baseline", kubelet),
        ]
        for thread in self.background:
            thread.start()
        progress(
            f"background: {s.stock_flips} moves seen by stock MLflow (alias cache TTL {ttl:g} s), "
            f"{s.kubelet_flips} CR flips through the {self.kubelet_source['mode']} kubelet "
            f"(sync every {s.kubelet_sync_s:g}-{period_max:g} s)"
        )

    def measure_sync(self) -> dict[str, Series]:
        import mlflow.genai

        from promptalias.registry import MlflowRegistry, RegistryConfig, VersionCache

        s, p = self.settings, self.prompts
        progress(f"alias sync + propagation: {s.sync_flips} CR flips (+{s.warmup_flips} warm-up)")
        loop = asyncio.new_event_loop()
        registry = MlflowRegistry(RegistryConfig(self.bed.mlflow_uri), cache=VersionCache())
        try:
            return measure_sync(
                SyncTargets(
                    patch=lambda v: self.kube.patch_version(NAMESPACE, "sync", v),
                    commit_key=f"{p['sync']}@{ALIAS}",
                    reader_key=self.uri["sync"],
                    floor=lambda v: mlflow.genai.set_prompt_alias(p["floor"], alias=ALIAS, version=v),
                    floor_key=f"{p['floor']}@{ALIAS}",
                    ours=lambda v: loop.run_until_complete(registry.set_alias(p["ours"], ALIAS, v)),
                    ours_key=f"{p['ours']}@{ALIAS}",
                ),
                self.commits,
                self.app,
                namespace_reader=self.app_namespace,
                flips=s.sync_flips,
                warmup=s.warmup_flips,
                timeout=30,
                progress=progress,
                rng=self.rng,
                record=self.sync_flips,
            )
        finally:
            loop.run_until_complete(registry.close())
            loop.close()

    def measure_follow(self) -> tuple[Series, Series | None, dict[str, Any]]:
        import mlflow.genai

        from promptalias.api.duration import parse_duration

        s, p = self.settings, self.prompts
        refresh_s = parse_duration(s.follow_refresh)
        progress(f"follow mode, polling every {s.follow_refresh}: {s.follow_flips} MLflow moves")
        polling = measure_moves(
            f"follow/polling {s.follow_refresh}",
            lambda v: mlflow.genai.set_prompt_alias(p["follow"], alias=ALIAS, version=v),
            self.app,
            self.uri["follow"],
            flips=s.follow_flips,
            warmup=s.warmup_flips,
            gap=lambda: self.rng.uniform(0, refresh_s),
            timeout=5 * refresh_s + 30,
            progress=progress,
        )
        if self.webhook_status != "registered":
            return polling, None, {}
        progress(f"follow mode, MLflow webhooks: {s.webhook_flips} MLflow moves")
        webhooks = measure_moves(
            "follow/webhooks",
            lambda v: self.mlflow2_client.set_prompt_alias(p["webhook"], ALIAS, v),
            self.app,
            self.uri["webhook"],
            flips=s.webhook_flips,
            warmup=s.warmup_flips,
            gap=lambda: self.rng.uniform(0.2, 0.5),
            timeout=90,
            progress=progress,
        )
        try:
            counts = webhook_receiver_counts(self.hook_port)
        except OSError as exc:
            counts = {"error": str(exc)}
        progress(f"  the operator's webhook receiver: {counts}")
        return polling, webhooks, counts

    def measure_client(self) -> tuple[dict[str, Any], dict[str, Any]]:
        s = self.settings
        progress("client: cached reads (fresh processes)")
        still = self.tmp / "still-projection"
        client_bench.copy_projection(
            str(self.sidecar_dir), f"{self.prompts['sync']}.{ALIAS}.json", str(still)
        )
        cached = client_bench.measure_cached_reads(
            prompts_dir=str(still),
            cache_dir=str(self.tmp / "timing-cache"),
            promptalias_uri=self.uri["sync"],
            mlflow_uri=self.uri["floor"],
            tracking_uri=self.bed.mlflow_uri,
            client_reads=s.client_reads,
            mlflow_reads=s.mlflow_reads,
            progress=progress,
        )
        progress(f"client: import time and peak RSS, {s.import_runs} fresh processes each")
        return cached, client_bench.measure_imports(s.import_runs, progress)

    def slow_results(self) -> tuple[Series, Series]:
        while any(t.is_alive() for t in self.background):
            mode = self.kubelet_source["mode"]
            progress(f"waiting for the slow baselines (stock MLflow alias cache, {mode} kubelet) ...")
            for thread in self.background:
                thread.join(timeout=20)
        stock, kubelet = (thread.outcome() for thread in self.background)
        return stock, kubelet


def main() -> int:
    settings = config.load()
    out = settings.out
    # Remove only what an earlier run wrote: BENCH_OUT may name a directory with other files.
    shutil.rmtree(out / "logs", ignore_errors=True)
    for old in (*out.glob("*.png"), out / "report.json", out / "report.md"):
        old.unlink(missing_ok=True)
    (out / "logs").mkdir(parents=True)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    logging.basicConfig(level=logging.WARNING)
    meta: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "mlflow": importlib.metadata.version("mlflow"),
    }
    progress(f"settings: {settings.as_dict()}")
    progress(f"load average {meta['loadavg_start']} on {meta['cpus']} CPUs (the machine is shared)")
    with ExitStack() as stack:
        # Entered first, so removed last: the sidecar and the readers stop before their files go.
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="promptalias-bench-")))
        bench = Bench(settings, stack, tmp)
        try:
            bench.start_servers()
            meta["kubernetes"] = bench.bed.server_version
            meta["kubelet_baseline"] = bench.kubelet_source
            bench.create_resources()
            bench.start_observers()
            bench.start_slow_baselines()
            sync = bench.measure_sync()
            polling, webhooks, counts = bench.measure_follow()
            cached, imports = bench.measure_client()
            stock, kubelet = bench.slow_results()
        finally:
            bench.stop_background()
        meta["operator_running_at_end"] = (
            bench.operator.proc is not None and bench.operator.proc.poll() is None
        )
        progress("stopping the testbed")
    meta["loadavg_end"] = loadavg()
    meta["runtime_s"] = time.monotonic() - STARTED
    data = results.assemble(
        settings=settings,
        meta=meta,
        sync=sync,
        stock=stock,
        kubelet=kubelet,
        polling=polling,
        webhooks=webhooks,
        webhook_status=bench.webhook_status,
        webhook_counts=counts,
        cached=cached,
        imports=imports,
        ttl=bench.ttl,
        kubelet_source=bench.kubelet_source,
    )
    data["propagation_stages"] = stages.breakdown(
        bench.sync_flips,
        stages.parse(bench.logs / "operator.log"),
        stages.parse(bench.logs / "sidecar.log"),
        key=f"{NAMESPACE}/sync",
    )
    data["plots"] = report.plot_all(data, out)
    report.write_json(data, out / "report.json")
    report.write_markdown(data, out / "report.md")
    progress(f"wrote {out / 'report.md'}, report.json, {', '.join(data['plots'])}")
    print("\n" + (out / "report.md").read_text().split("\n## 1.")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())

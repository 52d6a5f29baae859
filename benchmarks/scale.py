"""Scale section of `make bench` (issue 14): many PromptAliases on one operator.

    .venv/bin/python -m benchmarks.scale     (BENCH_SCALE_ALIASES / BENCH_SCALE_PROMPTS: 1000 / 200)

What it does, in one run on its own testbed:

1. registers BENCH_SCALE_PROMPTS prompts (two versions each) in a real `mlflow server`, reached by the
   operator only through a counting proxy on 127.0.0.1 (so MLflow requests are counted at the server
   side, per endpoint);
2. applies BENCH_SCALE_ALIASES PromptAliases (aliases a0, a1, ... spread evenly over the prompts, all at
   version 1) with one `kubectl apply --server-side`, *before* the operator runs;
3. starts `promptalias operator` and records, every second, how many are Ready at their spec version
   (observedGeneration current), the operator's RSS, and checks that every Ready resource's version is
   the one MLflow holds (read from MLflow's sqlite store, never through the operator);
4. once all are Ready: counts MLflow requests over one drift-resync period (refreshInterval);
5. moves 10% of the resources to version 2 in one `kubectl apply` and times until MLflow holds all
   of them, and until all are Ready again.

Optional: BENCH_SCALE_PROFILE=1 records the operator's start-up with py-spy (if installed) into
bench-results/scale_profile.txt (py-spy's --format raw, collapsed stacks).

Writes bench-results/scale.json, scale.md and scale_ready.png.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procs import REPO

NAMESPACE = "promptalias-scale"
FLOOR_SAMPLE = 1000  # aliases the MLflow floor writes
GROUP, VERSION, PLURAL = "promptalias.io", "v1alpha1", "promptaliases"
STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[scale {time.monotonic() - STARTED:5.0f}s] {message}", flush=True)


@dataclass(frozen=True)
class ScaleSettings:
    out: Path
    aliases: int
    prompts: int
    refresh: str
    timeout_s: float
    move_fraction: float
    profile: bool
    workers: str | None
    tracemalloc: bool

    @classmethod
    def load(cls) -> ScaleSettings:
        out = Path(os.environ.get("BENCH_OUT", REPO / "bench-results"))
        aliases = int(os.environ.get("BENCH_SCALE_ALIASES", "1000"))
        prompts = int(os.environ.get("BENCH_SCALE_PROMPTS", str(max(1, aliases // 5))))
        if aliases < prompts or prompts < 1:
            raise SystemExit(f"BENCH_SCALE_ALIASES={aliases} must be >= BENCH_SCALE_PROMPTS={prompts} >= 1")
        return cls(
            out=out if out.is_absolute() else REPO / out,
            aliases=aliases,
            prompts=prompts,
            refresh=os.environ.get("BENCH_SCALE_REFRESH", "30s"),
            timeout_s=float(os.environ.get("BENCH_SCALE_TIMEOUT", str(max(600, aliases * 0.12)))),
            move_fraction=float(os.environ.get("BENCH_SCALE_MOVE_FRACTION", "0.1")),
            profile=os.environ.get("BENCH_SCALE_PROFILE", "") == "1",
            workers=os.environ.get("BENCH_SCALE_WORKERS"),
            tracemalloc=os.environ.get("BENCH_SCALE_TRACEMALLOC", "") == "1",
        )


# ---- a counting proxy in front of MLflow ----------------------------------------------------------


class CountingProxy:
    """HTTP reverse proxy on 127.0.0.1 that counts requests by (method, path) and forwards them."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlflow-proxy", daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the counting proxy did not start")

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    def _run(self) -> None:
        from aiohttp import ClientSession, web

        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            session = ClientSession()

            async def forward(request: web.Request) -> web.StreamResponse:
                with self.lock:
                    self.counts[f"{request.method} {request.path}"] += 1
                body = await request.read()
                headers = {
                    k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
                }
                async with session.request(
                    request.method, self.upstream + request.path_qs, data=body or None, headers=headers
                ) as upstream:
                    data = await upstream.read()
                    out = {
                        k: v
                        for k, v in upstream.headers.items()
                        if k.lower()
                        not in ("content-length", "transfer-encoding", "content-encoding", "connection")
                    }
                    return web.Response(status=upstream.status, body=data, headers=out)

            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
            self._ready.set()
            await asyncio.Event().wait()

        self._loop.run_until_complete(main())


# ---- helpers ---------------------------------------------------------------------------------------


def alias_names(settings: ScaleSettings) -> list[tuple[str, str, str]]:
    """(resource name, prompt, alias) for every PromptAlias: aliases spread evenly over prompts."""
    rows = []
    for n in range(settings.aliases):
        p, a = n % settings.prompts, n // settings.prompts
        rows.append((f"s{p:05d}-a{a}", f"scale-{p:05d}", f"a{a}"))
    return rows


def manifest(rows: Iterable[tuple[str, str, str]], version: int) -> str:
    items = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PromptAlias",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"registryRef": {"name": "mlflow"}, "prompt": prompt, "alias": alias, "version": version},
        }
        for name, prompt, alias in rows
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def mlflow_aliases(db: Path) -> dict[tuple[str, str], int]:
    """(prompt, alias) -> version, read from MLflow's own sqlite store (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()
    finally:
        conn.close()
    return {(str(n), str(a)): int(v) for n, a, v in rows}


def memory_map(pid: int) -> dict[str, float]:
    """Where a process's RSS is, in MB: anonymous memory (heaps, malloc arenas, thread stacks) vs
    file-backed (the interpreter, shared libraries), and the thread count (/proc/PID/status)."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem", "Threads": "threads"}
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in wanted:
                number = int(value.split()[0])
                out[wanted[key]] = number if key == "Threads" else number / 1024
    except OSError:
        pass
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of one process."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Sample:
    t: float
    ready: int
    rss_mb: float
    wrong: int  # Ready at a version MLflow does not hold


@dataclass
class Observed:
    samples: list[Sample] = field(default_factory=list)
    all_ready_s: float | None = None
    wrong_total: int = 0
    wrong_examples: list[str] = field(default_factory=list)


def ready_at(items: list[dict[str, Any]]) -> dict[str, tuple[str, str, int]]:
    """name -> (prompt, alias, version) of every resource Ready at its spec version, status current."""
    out = {}
    for obj in items:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        if status.get("observedGeneration") != meta.get("generation"):
            continue
        if status.get("resolvedVersion") != spec.get("version"):
            continue
        if any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        ):
            out[meta["name"]] = (spec["prompt"], spec["alias"], int(spec["version"]))
    return out


# ---- the run ---------------------------------------------------------------------------------------


class Scale:
    def __init__(self, settings: ScaleSettings, stack: ExitStack) -> None:
        self.s = settings
        self.stack = stack
        self.logs = settings.out / "logs"
        self.rows = alias_names(settings)

    def setup(self) -> None:
        from promptalias.testbed import Testbed

        progress("starting the testbed (kube-apiserver, etcd, kube-controller-manager, MLflow)")
        self.bed = bed = Testbed.start()
        self.stack.callback(bed.stop)
        crds = str(REPO / "crds")
        bed.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=bench", "-f", crds)
        bed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        self.db = bed.mlflow.run_dir / "mlflow.db"
        self.proxy = CountingProxy(bed.mlflow_uri)
        self.proxy.start()
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=str(bed.kubeconfig))
        self.stack.callback(self.api.close)
        self.custom = client.CustomObjectsApi(self.api)
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": NAMESPACE}})
        registry = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PromptRegistry",
            "metadata": {"name": "mlflow", "namespace": NAMESPACE},
            "spec": {"trackingUri": self.proxy.uri, "refreshInterval": self.s.refresh},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "promptregistries", registry)

    def register_prompts(self) -> float:
        from concurrent.futures import ThreadPoolExecutor

        from promptalias.registry.testing import register_prompt_versions

        # MLflow logs a line per version it waits for: thousands of lines that hide the progress.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        progress(f"registering {self.s.prompts} prompts x 2 versions in MLflow")
        started = time.monotonic()
        templates = ["v1: Extract the fields of {{invoice}}.", "v2: Extract vendor and total of {{invoice}}."]
        names = sorted({prompt for _, prompt, _ in self.rows})
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: register_prompt_versions(self.bed.mlflow_uri, n, templates), names))
        return time.monotonic() - started

    def apply(self, rows: list[tuple[str, str, str]], version: int, name: str) -> float:
        path = self.s.out / "logs" / f"{name}.json"
        path.write_text(manifest(rows, version))
        started = time.monotonic()
        self.bed.kubectl("apply", "--server-side", "--field-manager=scale-bench", "-f", str(path))
        return time.monotonic() - started

    def list_items(self) -> list[dict[str, Any]]:
        got = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        items: list[dict[str, Any]] = got["items"]
        return items

    def start_operator(self) -> float:
        from promptalias.testbed.operator import OperatorProcess

        env = {"MLFLOW_DISABLE_TELEMETRY": "true"}
        if self.s.workers:
            env["PROMPTALIAS_WORKERS"] = self.s.workers
        if self.s.tracemalloc:
            env["PROMPTALIAS_TRACEMALLOC"] = "1"  # handlers/memory.py: top allocation sites in the log
        self.operator = OperatorProcess(
            self.bed, self.logs / "scale-operator.log", "--namespace", NAMESPACE, env=env
        )
        self.stack.callback(self.operator.stop)
        self.t0 = time.monotonic()
        self.operator.start(timeout=120)
        assert self.operator.proc is not None
        self.pid = self.operator.proc.pid
        if self.s.profile and shutil.which("py-spy"):
            out = self.s.out / "scale_profile.txt"
            self.profiler = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--format",
                    "raw",
                    "-o",
                    str(out),
                    "--pid",
                    str(self.pid),
                    "--rate",
                    "50",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.stack.callback(self.stop_profiler)
        return time.monotonic() - self.t0

    def stop_profiler(self) -> None:
        """py-spy writes its file on SIGINT (Ctrl-C), not on SIGTERM."""
        profiler: subprocess.Popen[bytes] | None = getattr(self, "profiler", None)
        if profiler is None or profiler.poll() is not None:
            return
        profiler.send_signal(signal.SIGINT)
        try:
            profiler.wait(60)
        except subprocess.TimeoutExpired:
            profiler.kill()

    def watch_ready(self, expected: dict[str, int], since: float, interval: float) -> Observed:
        """Sample until every resource in `expected` is Ready at its version (or the timeout)."""
        obs = Observed()
        deadline = since + self.s.timeout_s
        while time.monotonic() < deadline:
            try:
                items = self.list_items()
            except Exception as exc:  # noqa: BLE001 - an overloaded API server (504): sample again
                progress(f"  listing PromptAliases failed ({type(exc).__name__}); sampling again")
                time.sleep(interval)
                continue
            held = mlflow_aliases(self.db)  # after the list: a status seen Ready was written after MLflow
            ready = ready_at(items)
            good = {n for n, (_, _, v) in ready.items() if expected.get(n) == v}
            wrong = [n for n, (p, a, v) in ready.items() if held.get((p, a)) != v]
            obs.wrong_total += len(wrong)
            obs.wrong_examples.extend(wrong[: max(0, 5 - len(obs.wrong_examples))])
            rss, _ = rss_mb(self.pid)
            obs.samples.append(Sample(time.monotonic() - since, len(good), rss, len(wrong)))
            if len(good) >= len(expected):
                obs.all_ready_s = time.monotonic() - since
                break
            if len(obs.samples) % 10 == 0:
                progress(f"  {len(good)}/{len(expected)} Ready, operator RSS {rss:.0f} MB")
            time.sleep(interval)
        return obs

    def resync_requests(self) -> dict[str, Any]:
        from promptalias.api.duration import parse_duration

        period = parse_duration(self.s.refresh)
        before = self.proxy.snapshot()
        progress(
            f"counting MLflow requests over {2 * period:.0f} s "
            f"(two drift resyncs, refreshInterval {self.s.refresh})"
        )
        time.sleep(2 * period)
        after = self.proxy.snapshot()
        diff = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
        gets = diff.get("GET /api/2.0/mlflow/registered-models/get", 0)
        return {
            "window_s": 2 * period,
            "periods": 2,
            "requests": diff,
            "prompt_gets_per_prompt_per_resync": gets / 2 / self.s.prompts,
            "total_per_prompt_per_resync": sum(diff.values()) / 2 / self.s.prompts,
        }

    def mlflow_floor(self) -> dict[str, Any]:
        """The same MLflow writes the operator makes for a new alias (owner tag, alias POST, audit
        tag), made directly with promptalias.registry by as many concurrent writers as the operator
        has workers, through the same proxy, for another alias name of every resource: how long
        MLflow itself needs for what start-up asks of it (the floor of "start → all Ready")."""
        from promptalias.registry import MlflowRegistry, RegistryConfig, VersionCache

        writers = int(self.s.workers or 8)
        # At most 1,000 aliases (a few minutes at 10,000); the rate scales to the whole run.
        rows = [(prompt, f"floor{alias[1:]}") for _, prompt, alias in self.rows[:FLOOR_SAMPLE]]
        progress(
            f"MLflow floor: {len(rows) * 3} writes for {len(rows)} aliases, {writers} concurrent writers"
        )

        async def main() -> float:
            registry = MlflowRegistry(RegistryConfig(self.proxy.uri, timeout_s=60), cache=VersionCache())
            queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            for row in rows:
                queue.put_nowait(row)

            async def writer() -> None:
                while not queue.empty():
                    prompt, alias = queue.get_nowait()
                    await registry.set_prompt_tag(prompt, f"promptalias.io/owner.{alias}", "{}")
                    await registry.set_alias(prompt, alias, 1)
                    await registry.set_version_tag(prompt, 1, f"promptalias.io/moved.{alias}", "{}")

            started = time.monotonic()
            try:
                await asyncio.gather(*(writer() for _ in range(writers)))
            finally:
                await registry.close()
            return time.monotonic() - started

        seconds = asyncio.run(main())
        return {
            "aliases": len(rows),
            "writes": 3 * len(rows),
            "writers": writers,
            "seconds": seconds,
            "writes_per_s": 3 * len(rows) / seconds,
            "seconds_for_all": seconds * len(self.rows) / len(rows),
        }

    def mass_move(self) -> dict[str, Any]:
        count = max(1, int(len(self.rows) * self.s.move_fraction))
        step = max(1, len(self.rows) // count)
        moved = self.rows[::step][:count]
        progress(f"moving {len(moved)} PromptAliases to version 2 in one kubectl apply")
        before = self.proxy.snapshot()
        started = time.monotonic()
        apply_s = self.apply(moved, 2, "scale-move")
        in_mlflow: float | None = None
        while time.monotonic() - started < self.s.timeout_s:
            held = mlflow_aliases(self.db)
            if all(held.get((p, a)) == 2 for _, p, a in moved):
                in_mlflow = time.monotonic() - started
                break
            time.sleep(0.02)
        expected = {n: 1 for n, _, _ in self.rows} | {n: 2 for n, _, _ in moved}
        obs = self.watch_ready(expected, started, 0.5)
        after = self.proxy.snapshot()
        return {
            "moved": len(moved),
            "apply_s": apply_s,
            "all_moved_in_mlflow_s": in_mlflow,
            "all_ready_again_s": obs.all_ready_s,
            "wrong_ready": obs.wrong_total,
            "requests": {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)},
        }


def plot(samples: list[Sample], total: int, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    ts = [s.t for s in samples]
    ax.plot(ts, [s.ready for s in samples], label="Ready at spec version", linewidth=2)
    ax.axhline(total, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("seconds since `promptalias operator` was started")
    ax.set_ylabel("PromptAliases Ready")
    ax2 = ax.twinx()
    ax2.plot(ts, [s.rss_mb for s in samples], color="tab:red", linestyle=":", label="operator RSS (MB)")
    ax2.set_ylabel("operator RSS, MB")
    ax.legend(loc="lower right")
    ax2.legend(loc="center right")
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def write_markdown(data: dict[str, Any], path: Path) -> None:
    s, start, move, resync = data["settings"], data["startup"], data["mass_move"], data["resync"]

    def secs(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.1f} s"

    lines = [
        f"# Scale: {s['aliases']} PromptAliases over {s['prompts']} prompts",
        "",
        f"Run {data['meta']['started']} (commit {data['meta']['git_commit']}), load average "
        f"{data['meta']['loadavg_start']} at start, {data['meta']['loadavg_end']} at end.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| operator start → /healthz | {secs(start['healthz_s'])} |",
        f"| operator start → all Ready | {secs(start['all_ready_s'])} |",
        (
            f"| … floor: the same MLflow writes (3 per alias) made directly by {floor['writers']} concurrent "
            f"writers, {floor['writes_per_s']:.0f} writes/s over {floor['aliases']} aliases "
            f"(ratio: operator ÷ floor) | {secs(floor['seconds_for_all'])}"
            + (f" ({start['all_ready_s'] / floor['seconds_for_all']:.2f}x)" if start["all_ready_s"] else "")
            + " |"
            if (floor := data.get("mlflow_floor"))
            else "| … floor | - |"
        ),
        f"| Ready at a version MLflow does not hold (samples) | {start['wrong_ready']} |",
        f"| operator peak RSS (VmHWM) | {data['peak_rss_mb']:.0f} MB |",
        "| … at all Ready: anonymous / file-backed, threads | "
        + (
            f"{mem.get('anon', 0):.0f} MB / {mem.get('file', 0):.0f} MB, "
            f"{mem.get('threads', 0):.0f} threads |"
            if (mem := data.get("memory_at_ready"))
            else "- |"
        ),
        f"| MLflow requests, start → all Ready | {sum(start['requests'].values())} |",
        "| registered-models/get per prompt per drift resync | "
        f"{resync['prompt_gets_per_prompt_per_resync']:.2f} |",
        "| MLflow requests per prompt per drift resync (all kinds) | "
        f"{resync['total_per_prompt_per_resync']:.2f} |",
        f"| {move['moved']} moved in one kubectl apply → all moved in MLflow | "
        f"{secs(move['all_moved_in_mlflow_s'])} |",
        f"| … → all Ready again | {secs(move['all_ready_again_s'])} |",
        "",
        "MLflow requests by endpoint, operator start → all Ready:",
        "",
        *[f"- `{k}`: {v}" for k, v in sorted(start["requests"].items())],
        "",
        "MLflow requests during the mass move:",
        "",
        *[f"- `{k}`: {v}" for k, v in sorted(move["requests"].items())],
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    settings = ScaleSettings.load()
    out = settings.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "logs" / "scale-operator.log").unlink(missing_ok=True)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from benchmarks.run import git_commit, loadavg

    meta = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "loadavg_start": loadavg(),
        "cpus": os.cpu_count(),
    }
    progress(f"settings: {settings}")
    with ExitStack() as stack:
        run = Scale(settings, stack)
        run.setup()
        register_s = run.register_prompts()
        progress(f"applying {settings.aliases} PromptAliases (operator not running yet)")
        apply_s = run.apply(run.rows, 1, "scale-create")
        progress(f"applied in {apply_s:.1f} s; starting the operator")
        healthz_s = run.start_operator()
        expected = {n: 1 for n, _, _ in run.rows}
        obs = run.watch_ready(expected, run.t0, 1.0 if settings.aliases <= 2000 else 3.0)
        startup_requests = dict(run.proxy.snapshot())
        memory_at_ready = memory_map(run.pid)
        progress(f"start → all Ready: {obs.all_ready_s}; MLflow requests {sum(startup_requests.values())}")
        run.stop_profiler()
        resync = (
            run.resync_requests()
            if obs.all_ready_s is not None
            else {
                "requests": {},
                "prompt_gets_per_prompt_per_resync": float("nan"),
                "total_per_prompt_per_resync": float("nan"),
            }
        )
        move = run.mass_move()
        floor = run.mlflow_floor()
        _, peak = rss_mb(run.pid)
        log_tail = run.operator.log_tail(5)
        progress("stopping the testbed")
    meta["loadavg_end"] = loadavg()
    data = {
        "meta": meta,
        "settings": {
            **{k: str(v) for k, v in settings.__dict__.items()},
            "aliases": settings.aliases,
            "prompts": settings.prompts,
        },
        "register_s": register_s,
        "apply_s": apply_s,
        "startup": {
            "healthz_s": healthz_s,
            "all_ready_s": obs.all_ready_s,
            "wrong_ready": obs.wrong_total,
            "wrong_examples": obs.wrong_examples,
            "requests": startup_requests,
            "samples": [s.__dict__ for s in obs.samples],
        },
        "resync": resync,
        "mass_move": move,
        "mlflow_floor": floor,
        "peak_rss_mb": peak,
        "memory_at_ready": memory_at_ready,
        "operator_log_tail": log_tail,
    }
    (out / "scale.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    plot(
        obs.samples,
        settings.aliases,
        out / "scale_ready.png",
        f"{settings.aliases} PromptAliases / {settings.prompts} prompts: Ready after operator start",
    )
    write_markdown(data, out / "scale.md")
    print((out / "scale.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

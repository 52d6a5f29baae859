"""The report's data: summaries, ratios against the baselines, target verdicts, notes."""

from __future__ import annotations

import math
from typing import Any

from benchmarks import stats
from benchmarks.config import ALIAS, Settings
from benchmarks.flips import Series


def _target(target: str, source: str, measured: str, ok: bool | None) -> dict[str, Any]:
    return {"target": target, "source": source, "measured": measured, "pass": ok}


def alias_sync_section(sync: dict[str, Series]) -> dict[str, Any]:
    s = {name: series.summary() for name, series in sync.items()}
    section: dict[str, Any] = {
        "operator": s["operator_commit"],
        "operator_patch_call": s["operator_patch_call"],
        "set_prompt_alias_commit": s["floor_commit"],
        "set_prompt_alias_call": s["floor_call"],
        "registry_set_alias_commit": s["ours_commit"],
        "registry_set_alias_call": s["ours_call"],
    }
    section["ratios"] = {
        "set_prompt_alias (call start → committed) ÷ operator (CR patch start → committed)": stats.ratios(
            s["floor_commit"], s["operator_commit"]
        ),
        "set_prompt_alias call duration ÷ operator (CR patch start → committed)": stats.ratios(
            s["floor_call"], s["operator_commit"]
        ),
        "set_prompt_alias ÷ MlflowRegistry.set_alias (call start → committed)": stats.ratios(
            s["floor_commit"], s["ours_commit"]
        ),
        "set_prompt_alias ÷ MlflowRegistry.set_alias (call duration)": stats.ratios(
            s["floor_call"], s["ours_call"]
        ),
    }
    return section


def kubelet_note(settings: Settings, kubelet: dict[str, Any], source: dict[str, str]) -> str:
    """What the kubelet row measured: the real kubelet on the testbed's node, or the emulation."""
    sync_s, jitter = settings.kubelet_sync_s, settings.kubelet_jitter
    period_max = sync_s * (1 + jitter)
    if source["mode"] == "real":
        return (
            f"kubelet row: a REAL kubelet ({source['detail']}). A pod on the testbed's node mounts the "
            "PromptAlias' projection ConfigMap as a volume; the reader re-reads the file kubelet wrote "
            "(`<kubelet root>/pods/<uid>/volumes/kubernetes.io~configmap/...`, the tmpfs the container "
            "sees). "
            "The kubelet runs with its defaults for this path: syncFrequency 60s and "
            "configMapAndSecretChangeDetectionStrategy Watch (pod resync every 60-90 s with "
            "workerResyncIntervalJitterFactor 0.5). The sidecar row's sidecar ran in the same run. Each CR "
            f"flip is made uniform(0, {sync_s:g} s) after the previous one was seen. "
            f"n = {kubelet['n']} (BENCH_KUBELET_FLIPS)."
        )
    return (
        f"kubelet row is an EMULATION ({source['detail']}): benchmarks/kubelet.py keeps the "
        "ConfigMap in a watch-based cache (kubelet's default Watch strategy) and re-projects it only on "
        f"pod sync, every wait.Jitter({sync_s:g} s, {jitter:g}) = {sync_s:g} to {period_max:g} s "
        "(syncFrequency default 1m, workerResyncIntervalJitterFactor 0.5, Kubernetes v1.35 "
        "pkg/kubelet), plus the volume manager's two 100 ms loops, in kubelet's AtomicWriter layout "
        "(`..data` swap), only when the content changed. The app re-reads the mounted file. Each CR "
        f"flip is made uniform(0, {sync_s:g} s) after the previous one was seen. "
        f"n = {kubelet['n']} (BENCH_KUBELET_FLIPS)."
    )


def propagation_section(
    settings: Settings,
    sync: dict[str, Series],
    stock: Series,
    kubelet: Series,
    ttl: float,
    kubelet_source: dict[str, str] | None = None,
) -> dict[str, Any]:
    source = kubelet_source or {"mode": "emulated", "detail": "no node on this testbed"}
    real = source["mode"] == "real"
    ours, stock_s, kubelet_s = sync["propagation"].summary(), stock.summary(), kubelet.summary()
    sync_s, jitter = settings.kubelet_sync_s, settings.kubelet_jitter
    period_max = sync_s * (1 + jitter)
    what = "real kubelet" if real else "EMULATED"
    return {
        "promptalias": ours,
        "promptalias_namespace": sync["propagation_namespace"].summary(),
        "promptalias_after_commit": sync["commit_to_read"].summary(),
        "stock_mlflow": stock_s,
        "kubelet": kubelet_s,
        "kubelet_label": f"kubelet-mounted ConfigMap ({what}): CR patch → app",
        "stock_params": {
            "alias_cache_ttl_s": ttl,
            "move_delay": f"uniform(0, {ttl:g} s) after the previous change was seen",
        },
        "kubelet_params": {
            "emulated": not real,
            "source": source["mode"],
            "source_detail": source["detail"],
            "sync_frequency_s": sync_s,
            "jitter_factor": jitter,
            "resync_interval_s": [sync_s, period_max],
            "volume_manager_loops_s": 0.1,
            "configmap_cache": "watch",
            "move_delay": f"uniform(0, {sync_s:g} s) after the previous change was seen",
        },
        "ratios": {
            "stock mlflow.genai.load_prompt ÷ promptalias": stats.ratios(stock_s, ours),
            f"kubelet-mounted ConfigMap ({what}) ÷ promptalias": stats.ratios(kubelet_s, ours),
        },
        "notes": [
            f"promptalias row: {ours['n']} CR flips (spec.version 2↔3, merge patch through the kubernetes "
            "client); the sidecar runs with `--names` (one field-selector watch per ConfigMap) and the "
            "reader calls `promptalias.client.load_prompt` with PROMPTALIAS_PROMPTS_DIR and "
            "PROMPTALIAS_SIDECAR_URL set, default settings otherwise. Its sub-row starts at the MLflow "
            "commit of the same flip: the operator writes the alias first, then the projection ConfigMap.",
            "stock row: a long-running process calls "
            f'`mlflow.genai.load_prompt("prompts:/<name>@{ALIAS}")` with MLflow\'s default alias cache '
            f"(MLFLOW_ALIAS_PROMPT_CACHE_TTL_SECONDS = {ttl:g} s); each move is made uniform(0, {ttl:g} s) "
            "after the previous one was seen, i.e. at a random point of the cache entry's life. "
            f"n = {stock_s['n']} (BENCH_STOCK_FLIPS): slow by nature, about {ttl:g} s per move.",
            kubelet_note(settings, kubelet_s, source),
            "The stock and kubelet baselines ran in background threads while the other benchmarks ran; "
            f"their readers pause {settings.slow_read_interval_s * 1e3:g} ms between reads, far below "
            "their tens of seconds.",
        ],
    }


def follow_section(
    settings: Settings,
    polling: Series,
    webhooks: Series | None,
    webhook_status: str,
    webhook_counts: dict[str, Any],
    stock: dict[str, Any],
) -> dict[str, Any]:
    poll_s = polling.summary()
    hook_s = webhooks.summary() if webhooks is not None else None
    refresh = settings.follow_refresh
    ratios = {"stock mlflow.genai.load_prompt ÷ follow mode with polling": stats.ratios(stock, poll_s)}
    notes = [
        "follow mode: PromptAliases without spec.version; each move made with "
        "`mlflow.genai.set_prompt_alias` (out of band), measured from its return to the app's read. "
        f"Polling row: PromptRegistry refreshInterval {refresh}; each move made uniform(0, {refresh}) after "
        "the previous one was seen.",
    ]
    if hook_s is not None:
        ratios["stock mlflow.genai.load_prompt ÷ follow mode with webhooks"] = stats.ratios(stock, hook_s)
        ratios["follow mode polling ÷ follow mode with webhooks"] = stats.ratios(poll_s, hook_s)
        notes.append(
            "webhook row: a second MLflow server (its deliveries touch no other benchmark), started with "
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https because the operator's receiver "
            "(`--mlflow-webhook-listen`) speaks plain HTTP on loopback (MLflow allows only https:// webhook "
            "URLs by default); the webhook is registered by the operator from PromptRegistry `spec.webhook`. "
            f"That registry keeps the default refreshInterval (60s). Receiver counters after the run: "
            f"{webhook_counts}."
        )
    else:
        notes.append(f"webhook row: not measured; the operator's MLflow webhook was {webhook_status}.")
    return {
        "polling": poll_s,
        "refresh_interval": refresh,
        "webhook": hook_s,
        "webhook_status": webhook_status,
        "webhook_receiver": webhook_counts,
        "ratios": ratios,
        "notes": notes,
    }


def client_section(cached: dict[str, Any], imports: dict[str, Any]) -> dict[str, Any]:
    ours_ns = cached["promptalias"]["ns_per_call_median"]
    ours_import = imports["promptalias.client"]
    return {
        "cached_read": cached,
        "imports": imports,
        "ratios": {
            "cached read: mlflow.genai.load_prompt (default) ÷ promptalias": stats.ratio(
                cached["mlflow_default"]["ns_per_call_median"], ours_ns
            ),
            "cached read: mlflow.genai.load_prompt (MLFLOW_REGISTRY_URI set) ÷ promptalias": stats.ratio(
                cached["mlflow_registry_uri"]["ns_per_call_median"], ours_ns
            ),
            "import time: `import mlflow` ÷ `import promptalias.client`": stats.ratio(
                imports["mlflow"]["seconds_median"], ours_import["seconds_median"]
            ),
            "import time: `import mlflow.genai` ÷ `import promptalias.client`": stats.ratio(
                imports["mlflow.genai"]["seconds_median"], ours_import["seconds_median"]
            ),
            "peak RSS: `import mlflow.genai` ÷ `import promptalias.client`": stats.ratio(
                imports["mlflow.genai"]["peak_rss_mb_median"], ours_import["peak_rss_mb_median"]
            ),
        },
    }


def targets(sync: dict[str, Any], prop: dict[str, Any], client: dict[str, Any]) -> list[dict[str, Any]]:
    op, floor, ours = sync["operator"], sync["set_prompt_alias_commit"], prop["promptalias"]
    ours_ns_mode = prop["promptalias_namespace"]
    cr = client["ratios"]
    read_default = cr["cached read: mlflow.genai.load_prompt (default) ÷ promptalias"]
    read_tuned = cr["cached read: mlflow.genai.load_prompt (MLFLOW_REGISTRY_URI set) ÷ promptalias"]
    import_ratio = cr["import time: `import mlflow` ÷ `import promptalias.client`"]
    ours_ns = client["cached_read"]["promptalias"]["ns_per_call_median"]
    imp = client["imports"]["promptalias.client"]
    seen = ours["failures"] == 0
    f = stats.fmt_seconds
    return [
        _target(
            "CR change → MLflow alias moved no slower than a bare set_prompt_alias "
            "(p50, both from start to committed)",
            "DESIGN.md",
            f"{f(op['p50'])} vs {f(floor['p50'])}",
            op["p50"] <= floor["p50"],
        ),
        _target(
            "… the same at p99",
            "DESIGN.md",
            f"{f(op['p99'])} vs {f(floor['p99'])}",
            op["p99"] <= floor["p99"],
        ),
        _target(
            "alias change → the app serves the new version, p99 < 1 s",
            "issue 5",
            f"{f(ours['p99'])} (n={ours['n']}, {ours['failures']} unseen)",
            ours["p99"] < 1.0 and seen,
        ),
        _target(
            "alias change → the app serves the new version, p99 < 100 ms (sidecar `--names`)",
            "DESIGN.md, issue 14",
            f"{f(ours['p99'])} (n={ours['n']})",
            ours["p99"] < 0.1 and seen,
        ),
        _target(
            "… the same with the sidecar in namespace mode (its default)",
            "issue 14",
            f"{f(ours_ns_mode['p99'])} (n={ours_ns_mode['n']}, {ours_ns_mode['failures']} unseen)",
            ours_ns_mode["p99"] < 0.1 and ours_ns_mode["failures"] == 0,
        ),
        _target(
            "cached read ≥ 100x faster than mlflow.genai.load_prompt cached (default settings)",
            "issue 5",
            stats.fmt_ratio(read_default),
            read_default >= 100,
        ),
        _target(
            "… also with MLFLOW_REGISTRY_URI set (MLflow's faster cached path)",
            "stricter reading",
            stats.fmt_ratio(read_tuned),
            read_tuned >= 100,
        ),
        _target("cached read < 1 µs", "DESIGN.md", f"{ours_ns:,.0f} ns", ours_ns < 1000),
        _target(
            "`import promptalias.client` ≥ 20x faster than `import mlflow`",
            "issue 5",
            stats.fmt_ratio(import_ratio),
            import_ratio >= 20,
        ),
        _target(
            "`import promptalias.client` < 50 ms",
            "DESIGN.md",
            stats.fmt_seconds(imp["seconds_median"]),
            imp["seconds_median"] < 0.05,
        ),
        _target(
            "peak RSS < 30 MB after `import promptalias.client`",
            "issue 5, DESIGN.md",
            f"{imp['peak_rss_mb_median']:.1f} MB",
            imp["peak_rss_mb_median"] < 30,
        ),
    ]


def assemble(
    *,
    settings: Settings,
    meta: dict[str, Any],
    sync: dict[str, Series],
    stock: Series,
    kubelet: Series,
    polling: Series,
    webhooks: Series | None,
    webhook_status: str,
    webhook_counts: dict[str, Any],
    cached: dict[str, Any],
    imports: dict[str, Any],
    ttl: float,
    kubelet_source: dict[str, str] | None = None,
) -> dict[str, Any]:
    alias_sync = alias_sync_section(sync)
    propagation = propagation_section(settings, sync, stock, kubelet, ttl, kubelet_source)
    follow = follow_section(
        settings, polling, webhooks, webhook_status, webhook_counts, propagation["stock_mlflow"]
    )
    client = client_section(cached, imports)
    unmeasured = []
    if propagation["kubelet_params"]["emulated"]:
        unmeasured.append(
            "A real kubelet: no node ran in this testbed ("
            + propagation["kubelet_params"]["source_detail"]
            + "), so the mounted-ConfigMap baseline is emulated (parameters above)."
        )
    unmeasured += [
        "The sidecar row's sidecar and reader run as local processes (every hop is loopback); the "
        "sidecar as a pod is proven by tests/node, not timed here.",
        "MLflow on a SQL server or with several workers (this MLflow is one worker on sqlite).",
    ]
    if webhooks is None:
        unmeasured.append(f"Follow mode with MLflow webhooks: the operator's webhook was {webhook_status}.")
    if math.isnan(propagation["stock_mlflow"]["p50"]) or math.isnan(propagation["kubelet"]["p50"]):
        unmeasured.append("A slow baseline produced no samples (see bench-results/logs).")
    return {
        "meta": meta,
        "settings": {**settings.as_dict(), "alias": ALIAS},
        "alias_sync": alias_sync,
        "propagation": propagation,
        "follow": follow,
        "client": client,
        "targets": targets(alias_sync, propagation, client),
        "unmeasured": unmeasured,
    }

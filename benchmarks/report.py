"""bench-results/: report.json (everything, samples included), report.md (tables) and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks import stages
from benchmarks.stats import fmt_ratio, fmt_seconds

# Markdown and plot labels of each latency series: (section, key) -> label
PROPAGATION_ROWS = (
    ("propagation", "promptalias", "promptalias: CR patch → operator → ConfigMap → sidecar → client"),
    (
        "propagation",
        "promptalias_namespace",
        "… the same, sidecar in namespace mode (its default: one watch of the namespace's projections)",
    ),
    ("follow", "polling", "promptalias follow mode, polling: MLflow move → app"),
    ("follow", "webhook", "promptalias follow mode, MLflow webhooks: MLflow move → app"),
    ("propagation", "kubelet", "kubelet-mounted ConfigMap: CR patch → app"),  # label: kubelet_label
    ("propagation", "stock_mlflow", "stock mlflow.genai.load_prompt: MLflow move → app"),
)
SYNC_ROWS = (
    ("operator", "operator: CR patch start → alias committed in MLflow"),
    ("set_prompt_alias_commit", "mlflow.genai.set_prompt_alias: call start → committed (floor)"),
    ("set_prompt_alias_call", "mlflow.genai.set_prompt_alias: call duration"),
    ("registry_set_alias_commit", "MlflowRegistry.set_alias: call start → committed"),
    ("registry_set_alias_call", "MlflowRegistry.set_alias: call duration"),
    ("operator_patch_call", "kubernetes client patch call duration (part of the operator row)"),
)


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _clean(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(_clean(results), indent=2, default=_json_default) + "\n")


def _row(label: str, s: dict[str, Any] | None) -> str:
    if not s:
        return f"| {label} | not measured | | | |"
    fails = f" ({s['failures']} unseen)" if s.get("failures") else ""
    return (
        f"| {label} | {s['n']}{fails} | {fmt_seconds(s['p50'])} | {fmt_seconds(s['p99'])} | "
        f"{fmt_seconds(s['max'])} |"
    )


def _targets_table(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | source | measured | result |", "|---|---|---|---|"]
    for t in targets:
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        lines.append(f"| {t['target']} | {t['source']} | {t['measured']} | **{verdict}** |")
    return lines


def write_markdown(results: dict[str, Any], path: Path) -> None:
    meta, settings = results["meta"], results["settings"]
    sync, prop, follow, client = (
        results["alias_sync"],
        results["propagation"],
        results["follow"],
        results["client"],
    )
    lines: list[str] = [
        "# promptalias benchmarks",
        "",
        f"Run {meta['started']} on {meta['host']} ({meta['cpus']} CPUs, load average "
        f"{meta['loadavg_start']} at start, {meta['loadavg_end']} at end; the machine is shared), "
        f"commit {meta['git_commit']}, Python {meta['python']}, mlflow {meta['mlflow']}, "
        f"Kubernetes {meta['kubernetes']}. `make bench` took {meta['runtime_s']:.0f} s.",
        "",
        "All rows of a table were measured in the same run, against a real kube-apiserver + etcd and a "
        "real `mlflow server` (sqlite) on this machine (127.0.0.1, or the node IP 10.254.0.1 when the "
        "testbed runs a real node). Latencies: p50 / p99 by linear interpolation; with "
        "small n the p99 is close to the maximum. Ratios are baseline ÷ promptalias (> 1: promptalias "
        "is faster).",
        "",
        "## Targets",
        "",
        *_targets_table(results["targets"]),
        "",
        "## 1. Alias sync: CR change → MLflow alias moved",
        "",
        '"Committed" is server-visible time: the moment MLflow\'s sqlite store commits the alias row, '
        "seen by inotify on the database journal (no polling of the server). Interleaved per flip: "
        f"operator, bare set_prompt_alias, MlflowRegistry.set_alias; spec.version alternates 2↔3. "
        f"{settings['warmup_flips']} warm-up flips per method are not counted.",
        "",
        "| method | n | p50 | p99 | max |",
        "|---|---|---|---|---|",
        *(_row(label, sync.get(key)) for key, label in SYNC_ROWS),
        "",
    ]
    for name, value in sync["ratios"].items():
        lines.append(f"- {name}: p50 {fmt_ratio(value['p50'])}, p99 {fmt_ratio(value['p99'])}")
    lines += [
        "",
        "## 2 and 3. Propagation: alias change → a running app's next read returns the new version",
        "",
        "Measured from the return of the change (the `kubectl patch` equivalent, or "
        "`mlflow.genai.set_prompt_alias`) to the first read in a separate long-running reader process that "
        "returns the new version. Readers read in a loop with a pause of "
        f"{settings['read_interval_s'] * 1e3:g} ms (promptalias) or "
        f"{settings['slow_read_interval_s'] * 1e3:g} ms (stock MLflow and kubelet baselines) between reads.",
        "",
        "| method | n | p50 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    for section, key, label in PROPAGATION_ROWS:
        lines.append(_row(results[section].get(f"{key}_label", label), results[section].get(key)))
        if key == "promptalias":
            after = "… of which: alias committed in MLflow → app read (projection, sidecar, client)"
            lines.append(_row(after, prop.get("promptalias_after_commit")))
    lines += [""]
    for name, value in {**prop["ratios"], **follow["ratios"]}.items():
        lines.append(f"- {name}: p50 {fmt_ratio(value['p50'])}, p99 {fmt_ratio(value['p99'])}")
    lines += ["", "Notes:", ""]
    lines += [f"- {note}" for note in prop["notes"] + follow["notes"]]
    if (breakdown := results.get("propagation_stages")) and breakdown["n"]:
        lines += [
            "",
            "### Where the promptalias propagation time goes",
            "",
            f"Stage timestamps (CLOCK_MONOTONIC, `PROMPTALIAS_STAGE_LOG=1` in the operator and the sidecar) "
            f"of the {breakdown['n']} counted CR flips above, each stage's first line after the patch "
            "started; medians (benchmarks/stages.py).",
            "",
            *stages.markdown(breakdown),
        ]
    lines += [
        "",
        "## 4. Client",
        "",
        "Cached read: `timeit` in a fresh process, after one first load; median of "
        f"{client['cached_read']['promptalias']['timings']} timings.",
        "",
        "| read | iterations per timing | ns per call (median) | ns per call (min) |",
        "|---|---|---|---|",
    ]
    for key in ("promptalias", "mlflow_default", "mlflow_registry_uri"):
        r = client["cached_read"][key]
        lines.append(
            f"| {r['label']} | {r['iterations_per_timing']:,} | {r['ns_per_call_median']:,.0f} | "
            f"{r['ns_per_call_min']:,.0f} |"
        )
    lines += [
        "",
        "Import: fresh interpreter per run, time around the import statement only (interpreter start "
        "excluded), peak RSS of the whole process (VmHWM); median of "
        f"{settings['import_runs']} runs, interleaved.",
        "",
        "| process | import time (median) | peak RSS (median) | modules loaded |",
        "|---|---|---|---|",
    ]
    for name, r in client["imports"].items():
        label, took = (name, "(baseline)") if name.startswith("python") else (f"`import {name}`", "")
        lines.append(
            f"| {label} | {took or fmt_seconds(r['seconds_median'])} | {r['peak_rss_mb_median']:.1f} MB | "
            f"{r['modules']} |"
        )
    lines += [""]
    for name, value in client["ratios"].items():
        lines.append(f"- {name}: {fmt_ratio(value)}")
    lines += ["", "## Not measured here", ""]
    lines += [f"- {item}" for item in results["unmeasured"]]
    lines += ["", "## Settings", "", "```json", json.dumps(settings, indent=2, default=str), "```", ""]
    lines += ["Plots: " + ", ".join(f"`{p}`" for p in results["plots"]), ""]
    path.write_text("\n".join(lines))


# ---- plots --------------------------------------------------------------------------------------


def _cdf(ax: Any, samples: list[float], label: str, scale: float, **style: Any) -> None:
    if not samples:
        return
    ordered = sorted(x * scale for x in samples)
    n = len(ordered)
    ys = [(i + 1) / n for i in range(n)]
    ax.step([ordered[0], *ordered], [0.0, *ys], where="post", label=f"{label} (n={n})", **style)
    if n <= 10:
        ax.plot(ordered, ys, "o", color=ax.lines[-1].get_color(), markersize=5)


def _bars(ax: Any, names: list[str], values: list[float], colors: list[str], unit: str, log: bool) -> None:
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 3, max(values) * 20)
    else:
        ax.set_xlim(0, max(values) * 1.35)
    for y, v in enumerate(values):
        text = f"{v:,.0f} {unit}" if v >= 10 else f"{v:.1f} {unit}"
        box = {"facecolor": "white", "edgecolor": "none", "pad": 1}
        ax.annotate(
            text, (v, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8, bbox=box
        )


def _target_line(ax: Any, x: float, label: str) -> None:
    ax.axvline(x, color="black", linestyle="--", linewidth=1)
    ax.text(x, -0.55, f" {label}", fontsize=8, va="bottom")


def plot_all(results: dict[str, Any], out: Path) -> list[str]:
    """CDFs of propagation and alias-sync latencies, and bars for the client; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []

    fig, ax = plt.subplots(figsize=(10, 6.5))
    for section, key, label in PROPAGATION_ROWS:
        s = results[section].get(key)
        if s:
            _cdf(ax, s["samples"], results[section].get(f"{key}_label", label), 1.0, linewidth=2)
    ax.set_xscale("log")
    ax.set_xlabel("alias change → the app reads the new version (seconds, log scale)")
    ax.set_ylabel("fraction of changes")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    for x, text in ((0.1, "100 ms"), (1.0, "1 s")):
        ax.axvline(x, color="grey", linestyle="--", linewidth=1)
        ax.text(x * 1.05, 0.02, text, color="grey")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, fontsize=8, frameon=False)
    ax.set_title("Propagation latency, CDF (same run)")
    fig.tight_layout()
    fig.savefig(out / "propagation_cdf.png", dpi=120)
    plt.close(fig)
    written.append("propagation_cdf.png")

    fig, ax = plt.subplots(figsize=(10, 6.5))
    for key, label in SYNC_ROWS[:5]:
        s = results["alias_sync"].get(key)
        if s:
            style = {"linestyle": "--", "linewidth": 1.5} if key.endswith("_call") else {"linewidth": 2}
            _cdf(ax, s["samples"], label, 1e3, **style)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("fraction of flips")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, fontsize=8, frameon=False)
    ax.set_title("Alias sync: change → alias committed in MLflow's store, CDF (same run)")
    fig.tight_layout()
    fig.savefig(out / "alias_sync_cdf.png", dpi=120)
    plt.close(fig)
    written.append("alias_sync_cdf.png")

    client = results["client"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    reads = client["cached_read"]
    names = [reads[k]["label"].replace(" (", "\n(") for k in reads]
    _bars(
        axes[0],
        names,
        [reads[k]["ns_per_call_median"] for k in reads],
        ["tab:green", "tab:red", "tab:orange"],
        "ns",
        True,
    )
    _target_line(axes[0], 1000, "1 µs")
    axes[0].set_xlabel("ns per cached load_prompt (log scale)")
    imports = {k: v for k, v in client["imports"].items() if k != "python (no import)"}
    inames = [f"import {k}" for k in imports]
    colors = ["tab:green"] + ["tab:red"] * (len(imports) - 1)
    _bars(axes[1], inames, [v["seconds_median"] * 1e3 for v in imports.values()], colors, "ms", True)
    _target_line(axes[1], 50, "50 ms")
    axes[1].set_xlabel("import time, ms (log scale)")
    _bars(axes[2], inames, [v["peak_rss_mb_median"] for v in imports.values()], colors, "MB", False)
    _target_line(axes[2], 30, "30 MB")
    axes[2].set_xlabel("peak RSS of the whole process, MB")
    fig.suptitle("Client: cached read, import time, peak RSS (fresh processes, medians; dashed: targets)")
    fig.tight_layout()
    fig.savefig(out / "client.png", dpi=120)
    plt.close(fig)
    written.append("client.png")
    return written

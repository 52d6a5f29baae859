"""Client micro-benchmarks, each in fresh child processes: cached reads, import time, peak RSS."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from benchmarks.procs import REPO, child_env

# Timed inside the child: only `time` (builtin) is loaded before the import. Peak RSS is VmHWM of
# /proc/self/status: the high-water mark of this process's own address space. (ru_maxrss would not
# do: Linux carries it over from the parent across fork + exec, and the parent has mlflow loaded.)
IMPORT_SCRIPT = """
import time
t0 = time.perf_counter()
{statement}
t1 = time.perf_counter()
import sys
with open("/proc/self/status") as status:
    hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(t1 - t0, hwm_kib, len(sys.modules))
"""

# `stmt` is compiled into timeit's loop (no lambda call per iteration). The first call resolves the
# prompt (files for promptalias, REST for MLflow); every timed call after it is a cached read.
READ_SCRIPT = """
import json, sys, timeit
{setup}
uri = sys.argv[1]
number, repeat = int(sys.argv[2]), int(sys.argv[3])
first = {call}
timer = timeit.Timer({call!r}, globals=globals())
runs = timer.repeat(repeat=repeat, number=number)
print(json.dumps({{"version": first.version, "per_call_s": [r / number for r in runs]}}))
"""

IMPORTS = {
    "python (no import)": "pass",
    "promptalias.client": "import promptalias.client",
    "mlflow": "import mlflow",
    "mlflow.genai": "import mlflow.genai",
}


def _run(argv: list[str], env: Mapping[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        argv, cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def measure_imports(runs: int, progress: Any) -> dict[str, Any]:
    """Import time (in-process perf_counter around the import) and the process's peak RSS, in fresh
    interpreters; runs interleaved round-robin so load changes hit every module alike; median."""
    env = child_env({"MLFLOW_DISABLE_TELEMETRY": "true"})
    raw: dict[str, list[tuple[float, float, int]]] = {name: [] for name in IMPORTS}
    for run in range(runs):
        for name, statement in IMPORTS.items():
            out = _run([sys.executable, "-c", IMPORT_SCRIPT.format(statement=statement)], env).split()
            raw[name].append((float(out[0]), int(out[1]) * 1024 / 1e6, int(out[2])))  # KiB -> MB
        progress(f"  import run {run + 1}/{runs}")
    result: dict[str, Any] = {}
    for name, values in raw.items():
        result[name] = {
            "runs": len(values),
            "seconds_median": statistics.median(v[0] for v in values),
            "seconds": [v[0] for v in values],
            "peak_rss_mb_median": statistics.median(v[1] for v in values),
            "peak_rss_mb": [v[1] for v in values],
            "modules": values[-1][2],
        }
    return result


def measure_cached_read(
    label: str, setup: str, call: str, uri: str, number: int, env: Mapping[str, str], repeat: int = 5
) -> dict[str, Any]:
    script = READ_SCRIPT.format(setup=setup, call=call)
    out = json.loads(_run([sys.executable, "-c", script, uri, str(number), str(repeat)], env))
    per_call = [float(x) for x in out["per_call_s"]]
    return {
        "label": label,
        "iterations_per_timing": number,
        "timings": repeat,
        "ns_per_call_median": statistics.median(per_call) * 1e9,
        "ns_per_call_min": min(per_call) * 1e9,
        "ns_per_call": [x * 1e9 for x in per_call],
        "version": out["version"],
    }


def measure_cached_reads(
    *,
    prompts_dir: str,
    cache_dir: str,
    promptalias_uri: str,
    mlflow_uri: str,
    tracking_uri: str,
    client_reads: int,
    mlflow_reads: int,
    progress: Any,
) -> dict[str, Any]:
    """promptalias.client.load_prompt (projected file, default settings) vs mlflow.genai.load_prompt
    (alias URI, default alias cache), the latter with and without MLFLOW_REGISTRY_URI."""
    client_env = child_env(
        {"PROMPTALIAS_PROMPTS_DIR": prompts_dir, "PROMPTALIAS_CACHE_DIR": cache_dir},
        drop=("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PROMPTALIAS_SIDECAR_URL"),
    )
    ours = measure_cached_read(
        "promptalias.client.load_prompt",
        "from promptalias.client import load_prompt",
        "load_prompt(uri)",
        promptalias_uri,
        client_reads,
        client_env,
    )
    progress(f"  promptalias.client.load_prompt cached: {ours['ns_per_call_median']:.0f} ns/call")
    base = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    default_env = child_env(base, drop=("MLFLOW_REGISTRY_URI",))
    theirs = measure_cached_read(
        "mlflow.genai.load_prompt",
        "import mlflow.genai",
        "mlflow.genai.load_prompt(uri)",
        mlflow_uri,
        mlflow_reads,
        default_env,
    )
    progress(f"  mlflow.genai.load_prompt cached: {theirs['ns_per_call_median']:.0f} ns/call")
    tuned_env = child_env({**base, "MLFLOW_REGISTRY_URI": tracking_uri})
    tuned = measure_cached_read(
        "mlflow.genai.load_prompt (MLFLOW_REGISTRY_URI set)",
        "import mlflow.genai",
        "mlflow.genai.load_prompt(uri)",
        mlflow_uri,
        mlflow_reads,
        tuned_env,
    )
    progress(f"  same, MLFLOW_REGISTRY_URI set: {tuned['ns_per_call_median']:.0f} ns/call")
    return {"promptalias": ours, "mlflow_default": theirs, "mlflow_registry_uri": tuned}


def copy_projection(source_dir: str, key: str, target_dir: str) -> None:
    """A still copy of one projected file (read through the sidecar's `<key>` link) for timing."""
    os.makedirs(target_dir, exist_ok=True)
    with open(os.path.join(source_dir, key), "rb") as src:
        data = src.read()
    with open(os.path.join(target_dir, key), "wb") as dst:
        dst.write(data)

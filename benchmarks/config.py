"""Benchmark settings, all from the environment (defaults keep `make bench` to a few minutes)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procs import REPO

ALIAS = "production"  # the MLflow alias every benchmark moves


def _int(name: str, default: int, minimum: int = 1) -> int:
    value = int(os.environ.get(name, default))
    if value < minimum:
        raise SystemExit(f"{name}={value}: must be at least {minimum}")
    return value


def _float(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if value <= 0:
        raise SystemExit(f"{name}={value}: must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    out: Path
    sync_flips: int
    follow_flips: int
    webhook_flips: int
    stock_flips: int
    kubelet_flips: int
    kubelet_sync_s: float
    kubelet_jitter: float
    follow_refresh: str
    read_interval_s: float
    slow_read_interval_s: float
    import_runs: int
    client_reads: int
    mlflow_reads: int
    warmup_flips: int
    env_names: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


ENV_DOC = {
    "BENCH_OUT": "output directory (bench-results)",
    "BENCH_SYNC_FLIPS": "CR flips for alias sync and propagation (50)",
    "BENCH_FOLLOW_FLIPS": "out-of-band MLflow moves, follow mode with polling (30)",
    "BENCH_WEBHOOK_FLIPS": "out-of-band MLflow moves, follow mode with MLflow webhooks (30)",
    "BENCH_STOCK_FLIPS": "alias moves seen by stock mlflow.genai.load_prompt (3; ~60 s each)",
    "BENCH_KUBELET_FLIPS": "CR flips seen through the emulated kubelet-mounted ConfigMap (3; ~75 s each)",
    "BENCH_KUBELET_SYNC_S": "emulated kubelet syncFrequency in seconds (60, the kubelet default)",
    "BENCH_FOLLOW_REFRESH": "PromptRegistry refreshInterval for follow mode with polling (2s)",
    "BENCH_READ_INTERVAL_MS": "pause between reads of the promptalias reader (1 ms)",
    "BENCH_SLOW_READ_INTERVAL_MS": "pause between reads of the stock and kubelet readers (5 ms)",
    "BENCH_IMPORT_RUNS": "fresh processes per import measurement (5)",
    "BENCH_CLIENT_READS": "load_prompt calls per timing of the promptalias client (1000000)",
    "BENCH_MLFLOW_READS": "load_prompt calls per timing of mlflow.genai (5000)",
}


def load() -> Settings:
    out = Path(os.environ.get("BENCH_OUT", REPO / "bench-results"))
    return Settings(
        out=out if out.is_absolute() else REPO / out,
        sync_flips=_int("BENCH_SYNC_FLIPS", 50),
        follow_flips=_int("BENCH_FOLLOW_FLIPS", 30),
        webhook_flips=_int("BENCH_WEBHOOK_FLIPS", 30),
        stock_flips=_int("BENCH_STOCK_FLIPS", 3),
        kubelet_flips=_int("BENCH_KUBELET_FLIPS", 3),
        kubelet_sync_s=_float("BENCH_KUBELET_SYNC_S", 60.0),
        kubelet_jitter=0.5,
        follow_refresh=os.environ.get("BENCH_FOLLOW_REFRESH", "2s"),
        read_interval_s=_float("BENCH_READ_INTERVAL_MS", 1.0) / 1000,
        slow_read_interval_s=_float("BENCH_SLOW_READ_INTERVAL_MS", 5.0) / 1000,
        import_runs=_int("BENCH_IMPORT_RUNS", 5),
        client_reads=_int("BENCH_CLIENT_READS", 1_000_000),
        mlflow_reads=_int("BENCH_MLFLOW_READS", 5_000),
        warmup_flips=2,
        env_names={name: os.environ[name] for name in ENV_DOC if name in os.environ},
    )

"""Flip loops: make a change, time it, wait until an observer sees it. Times are CLOCK_MONOTONIC ns."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import stats
from benchmarks.procs import Observations
from benchmarks.stages import Flip

Progress = Callable[[str], None]


@dataclass
class Series:
    """Latency samples (seconds) of one method, and how many flips were never observed."""

    samples: list[float] = field(default_factory=list)
    failures: int = 0

    def add(self, start_ns: int, end_ns: int | None) -> None:
        if end_ns is None:
            self.failures += 1
        else:
            self.samples.append((end_ns - start_ns) / 1e9)

    def summary(self) -> dict[str, Any]:
        return stats.summary(self.samples, failures=self.failures)

    def brief(self) -> str:
        s = self.summary()
        fails = f", {self.failures} unseen" if self.failures else ""
        return f"p50 {stats.fmt_seconds(s['p50'])} p99 {stats.fmt_seconds(s['p99'])} (n={s['n']}{fails})"


def other(version: int) -> int:
    return 3 if version == 2 else 2


@dataclass
class SyncTargets:
    """What the alias-sync benchmark flips and watches."""

    patch: Callable[[int], None]  # the CR change (kubernetes client merge patch of spec.version)
    commit_key: str  # `<prompt>@<alias>` of the operator-managed alias in the commit probe
    reader_key: str  # the URI the promptalias reader loads
    floor: Callable[[int], None]  # mlflow.genai.set_prompt_alias on another prompt
    floor_key: str
    ours: Callable[[int], None]  # promptalias.registry.MlflowRegistry.set_alias on a third prompt
    ours_key: str


def measure_sync(
    targets: SyncTargets,
    commits: Observations,
    reader: Observations,
    *,
    namespace_reader: Observations | None = None,
    flips: int,
    warmup: int,
    timeout: float,
    progress: Progress,
    rng: random.Random,
    record: list[Flip] | None = None,
) -> dict[str, Series]:
    """Interleaved per flip: operator (CR patch), bare set_prompt_alias, MlflowRegistry.set_alias.

    Operator: patch start -> the alias commit in MLflow's store; patch return -> the app's read.
    `record` collects each counted CR flip for the stage breakdown (benchmarks/stages.py);
    `namespace_reader` reads through a sidecar in namespace mode (the default), beside `--names`.
    The two direct calls: call start -> commit, and the call's own duration (start -> return).
    """
    out = {
        name: Series()
        for name in (
            "operator_commit",
            "operator_patch_call",
            "propagation",
            "propagation_namespace",
            "commit_to_read",
            "floor_commit",
            "floor_call",
            "ours_commit",
            "ours_call",
        )
    }
    version = 2
    for i in range(warmup + flips):
        counted = i >= warmup
        version = other(version)
        value = str(version)

        t0 = time.monotonic_ns()
        targets.patch(version)
        t1 = time.monotonic_ns()
        committed = commits.wait_for(targets.commit_key, value, t0, timeout)
        read = reader.wait_for(targets.reader_key, value, t0, timeout)
        read_ns = (
            namespace_reader.wait_for(targets.reader_key, value, t0, timeout)
            if namespace_reader is not None
            else None
        )
        if counted:
            if record is not None:
                record.append(Flip(version, t0, t1, read))
            out["operator_patch_call"].add(t0, t1)
            out["operator_commit"].add(t0, committed)
            out["propagation"].add(t1, read)
            if namespace_reader is not None:
                out["propagation_namespace"].add(t1, read_ns)
            if committed is not None and read is not None:
                out["commit_to_read"].add(committed, read)  # the projection path after MLflow's commit

        for name, call, key in (
            ("floor", targets.floor, targets.floor_key),
            ("ours", targets.ours, targets.ours_key),
        ):
            time.sleep(rng.uniform(0.05, 0.1))
            t0 = time.monotonic_ns()
            call(version)
            t1 = time.monotonic_ns()
            committed = commits.wait_for(key, value, t0, timeout)
            if counted:
                out[f"{name}_call"].add(t0, t1)
                out[f"{name}_commit"].add(t0, committed)

        done = i + 1 - warmup
        if counted and (done % 10 == 0 or done == flips):
            progress(
                f"  flip {done}/{flips}: operator {out['operator_commit'].brief()} | "
                f"set_prompt_alias {out['floor_commit'].brief()} | app read {out['propagation'].brief()}"
            )
        # Let the operator finish its pass (status, events) before the next change.
        time.sleep(rng.uniform(0.2, 0.4))
    return out


def measure_moves(
    name: str,
    move: Callable[[int], None],
    observations: Observations,
    key: str,
    *,
    flips: int,
    warmup: int,
    gap: Callable[[], float],
    timeout: float,
    progress: Progress,
    stop: threading.Event | None = None,
    verbose: bool = False,
) -> Series:
    """Move to the other version after `gap()` seconds; time from the move's return to the
    first observation of the new version. Used for follow mode and the slow baselines."""
    series = Series()
    version = int(observations.latest(key) or 2)
    for i in range(warmup + flips):
        if stop is not None:
            if stop.wait(gap()):
                break
        else:
            time.sleep(gap())
        version = other(version)
        t0 = time.monotonic_ns()
        move(version)
        t1 = time.monotonic_ns()
        seen = observations.wait_for(key, str(version), t0, timeout)
        if stop is not None and stop.is_set():
            break
        if i >= warmup:
            series.add(t1, seen)
            done = i + 1 - warmup
            if verbose:
                took = "not seen" if seen is None else stats.fmt_seconds((seen - t1) / 1e9)
                progress(f"  {name} {done}/{flips}: {took}")
            elif done % 10 == 0 or done == flips:
                progress(f"  {name} {done}/{flips}: {series.brief()}")
    return series

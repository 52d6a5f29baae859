"""The propagation breakdown of `make bench` (benchmarks/stages.py): stage lines lined up per flip."""

from __future__ import annotations

from pathlib import Path

from benchmarks.stages import Flip, breakdown, parse

MS = 1_000_000


def log(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_each_stage_is_timed_from_the_patchs_return_in_time_order(tmp_path: Path) -> None:
    operator = log(
        tmp_path / "operator.log",
        [
            "[2026-12-06 18:00:00] promptalias.stages [INFO] stage event ns/sync 3 " + str(1 * MS),
            "stage pass ns/sync 3 " + str(2 * MS),
            "stage read ns/sync 3 " + str(8 * MS),
            "stage intent ns/sync 3 " + str(15 * MS),
            "stage mlflow ns/sync 3 " + str(25 * MS),
            "stage configmap ns/sync 3 " + str(35 * MS),
            "stage status ns/sync 3 " + str(45 * MS),
            "stage mlflow ns/other 3 " + str(20 * MS),  # another resource: ignored
        ],
    )
    sidecar = log(
        tmp_path / "sidecar.log",
        [
            "stage watch ns/promptalias-sync 777 " + str(37 * MS),
            "stage written p.production.json 3 " + str(40 * MS),
        ],
    )
    flip = Flip(version=3, start_ns=0, returned_ns=1 * MS, read_ns=42 * MS)
    result = breakdown([flip], parse(operator), parse(sidecar), key="ns/sync")
    rows = {row["stage"]: row for row in result["stages"]}
    assert result["n"] == 1
    assert rows["mlflow"]["after_patch_ms_p50"] == 24.0
    assert rows["mlflow"]["step_ms_p50"] == 10.0  # after the intent
    assert rows["watch"]["step_ms_p50"] == 2.0  # after the ConfigMap apply, before the final status
    assert rows["read_by_app"]["after_patch_ms_p50"] == 41.0
    assert rows["status"]["n"] == 0  # after the app's read: not part of this flip's path


def test_a_flip_the_app_never_read_counts_for_nothing(tmp_path: Path) -> None:
    result = breakdown([Flip(2, 0, MS, None)], [], [], key="ns/sync")
    assert result["n"] == 0
    assert all(row["n"] == 0 for row in result["stages"])

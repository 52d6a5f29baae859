"""The client must stay light: stdlib only at import, fast, small (DESIGN.md "Performance budget")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import promptalias

OPERATOR_DIR = str(Path(promptalias.__file__).resolve().parent.parent)
HEAVY = [
    "mlflow",
    "kopf",
    "kubernetes",
    "pydantic",
    "aiohttp",
    "yaml",
    "requests",
    "urllib3",
    "prometheus_client",
]

PROBE = f"""
import sys, time
before = set(sys.modules)
start = time.perf_counter()
from promptalias.client import load_prompt, Prompt, PromptStore, PromptNotFoundError
elapsed = time.perf_counter() - start
new = sorted(set(sys.modules) - before)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
# stdlib modules live under sys.stdlib_module_names (3.10+); ours under promptalias.
foreign = sorted(
    m for m in new if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "promptalias"
)
# VmHWM: peak RSS of this process image (ru_maxrss would include the parent's peak across exec).
with open("/proc/self/status") as status:
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
import json
result = {{"elapsed": elapsed, "heavy": heavy, "foreign": foreign, "rss_kib": rss_kib, "new": len(new)}}
print(json.dumps(result))
"""


def _probe() -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = OPERATOR_DIR
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import site; site.main()\n" + PROBE],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_import_uses_the_standard_library_only() -> None:
    result = _probe()
    assert result["heavy"] == []
    assert result["foreign"] == []


def test_import_is_small() -> None:
    # How fast the import is (DESIGN: < 50 ms) is measured by `make bench` (client section), where a
    # busy machine cannot fail a build; here the deterministic part: the peak RSS of a cold import.
    runs = [_probe() for _ in range(3)]
    rss_mib = max(int(r["rss_kib"]) for r in runs) / 1024  # type: ignore[call-overload]
    print(f"import promptalias.client: peak RSS {rss_mib:.1f} MiB")
    assert rss_mib < 30

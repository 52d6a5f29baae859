"""The image the chart deploys, as far as it can be verified without a container engine.

There is no docker/buildah here, so `docker build` itself is NOT executed. What is verified: the
Dockerfile's shape (pinned slim base, two stages, numeric non-root user matching the chart, the
`promptalias` entrypoint), and its build recipe replayed on this machine — build the wheel from
this checkout exactly as the build stage does, install it into a fresh virtualenv, and run the
checks the build stage runs. Dependencies are not downloaded again (that would take minutes): the
fresh virtualenv sees the dev virtualenv's third-party packages, never its editable promptalias.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _run(*argv: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, argv))}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_dockerfile_is_multi_stage_slim_pinned_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base, "the base image is one build argument, shared by both stages"
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1)), base.group(1)
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.MULTILINE)
    assert stages == [("${PYTHON_IMAGE}", "build"), ("${PYTHON_IMAGE}", "runtime")]
    runtime = text.split("AS runtime", 1)[1]
    assert "COPY --from=build /opt/promptalias /opt/promptalias" in runtime
    assert "pip " not in runtime  # nothing is installed at runtime
    assert "apt-get" not in runtime
    user = re.search(r"^USER (\d+):(\d+)$", runtime, re.MULTILINE)
    assert user, "a numeric user, so the kubelet can verify runAsNonRoot"
    values = yaml.safe_load((ROOT / "charts" / "promptalias" / "values.yaml").read_text())
    assert int(user.group(1)) == values["podSecurityContext"]["runAsUser"] != 0
    assert int(user.group(2)) == values["podSecurityContext"]["runAsGroup"]
    assert 'ENTRYPOINT ["promptalias"]' in runtime
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*", "the build context is an allowlist"
    assert {rule for rule in rules if rule.startswith("!")} == {"!pyproject.toml", "!README.md", "!operator/"}
    assert set(re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE)) == {
        "pyproject.toml README.md",
        "operator/",
    }


def test_wheel_installs_into_a_fresh_venv_and_starts(tmp_path: Path) -> None:
    # The build stage: `python -m pip wheel --no-deps --wheel-dir /dist .`
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, ROOT)
    (wheel,) = dist.glob("promptalias-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "promptalias/__init__.py" in names
    assert "promptalias/client/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "charts/", "hack/")) or "__pycache__" in n]
    assert "promptalias = promptalias.cli.main:main" in scripts
    assert "kubectl-promptalias = promptalias.cli.main:main" in scripts

    # `python -m venv /opt/promptalias && /opt/promptalias/bin/pip install /dist/promptalias-*.whl`
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", "--quiet", "--no-deps", wheel)
    site = Path(
        _run(
            venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).strip()
    )
    # Third-party dependencies from the dev virtualenv, appended after the fresh site-packages. A
    # plain path in a .pth file does not run that directory's own .pth files, so the dev venv's
    # editable promptalias (a .pth pointing at operator/) is not picked up.
    (site / "zz-dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")

    # The checks the build stage runs.
    help_text = _run(venv / "bin" / "promptalias", "--help", env=env)
    assert "operator" in help_text
    _run(venv / "bin" / "kubectl-promptalias", "--help", env=env)
    where = _run(
        venv / "bin" / "python",
        "-c",
        "import promptalias, promptalias.client; print(promptalias.__file__)",
        env=env,
    ).strip()
    assert Path(where).is_relative_to(site), f"promptalias imported from {where}, not from the wheel"
    # Every declared dependency is satisfied (by the dev venv here, by PyPI in the image).
    assert "No broken requirements found" in _run(venv / "bin" / "pip", "check", env=env)

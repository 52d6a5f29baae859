"""`promptalias demo` (`make demo`): the invoice-parser story end to end on the local testbed.

Starts (or reuses) the testbed, installs the CRDs, runs the operator, a sidecar and a small app as
local processes, then moves the alias 2 -> 3 -> 2 and shows the running app switching without a
restart, with the measured latency. Everything keeps running afterwards for you to try things;
`promptalias testbed down` (or `make clean`) stops it all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

PROMPT = "invoice-parser"
NAMESPACE = "billing"
PA = "invoice-parser-production"
TEMPLATES = [
    "v1: Extract vendor and total from this invoice: {{text}}",
    "v2: You are an accounts-payable assistant. Return JSON with vendor, invoice_number, total, currency "
    "for: {{text}}",
    "v3: You are an accounts-payable assistant. Return strict JSON {vendor, invoice_number, total, "
    "currency, due_date}; use null for anything missing. Invoice: {{text}}",
    "v4 (experimental): Think step by step, then return JSON {vendor, invoice_number, total, currency, "
    "due_date, line_items}. Invoice: {{text}}",
]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the invoice-parser story on the local testbed")
    parser.set_defaults(func=run)


def _say(step: str, text: str = "") -> None:
    print(f"\n\033[1m==> {step}\033[0m {text}".rstrip(), flush=True)


def _info(text: str) -> None:
    print(f"    {text}", flush=True)


def _repo() -> Path:
    from promptalias.testbed.build import find_source_root

    return find_source_root()


def _kubectl(state: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [state["kubectl"], f"--kubeconfig={state['kubeconfig']}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise SystemExit(f"error: kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _spawn(run_dir: Path, name: str, argv: list[str], env: dict[str, str]) -> int:
    """Start a long-running demo process in its own group, recorded so `testbed down` stops it."""
    from promptalias.testbed.procs import OWNER_FILE

    log = (run_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
    )
    owner_file = run_dir.parent / OWNER_FILE
    owner = json.loads(owner_file.read_text())
    owner["groups"] = [*owner.get("groups", []), proc.pid]
    owner_file.write_text(json.dumps(owner))
    return proc.pid


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - shown if we give up
            last = exc
        time.sleep(0.02)
    raise SystemExit(f"error: timed out waiting for {what} (last: {last!r}); logs are in the demo directory")


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback demo services
        body: dict[str, Any] = json.loads(response.read())
        return body


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback demo services
        text: str = response.read().decode()
        return text


def _free_port() -> int:
    from promptalias.testbed.ports import free_port

    return free_port()


def run(args: argparse.Namespace) -> int:
    from promptalias.testbed import Testbed, TestbedError, detached_state
    from promptalias.testbed.bed import DETACHED_DIR

    repo = _repo()
    _say("1/7", "Local control plane (kube-apiserver + etcd + controller-manager) and MLflow")
    try:
        if detached_state() is None:
            Testbed.start(detached=True)
        else:
            _info("reusing the running testbed")
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = detached_state()
    assert state is not None
    version = json.loads(_kubectl(state, "version", "-o", "json"))["serverVersion"]["gitVersion"]
    _info(
        f"Kubernetes {version}; MLflow {state['mlflowUri']} (health: "
        f"{_get_text(state['mlflowUri'] + '/health')})"
    )
    _info(
        "the demo runs the operator, sidecar and app as local processes (not yet as pods); the same "
        "story as pods on a real node is tests/node (make test, as root), and "
        "`promptalias testbed up --node` gives you a node to `helm install` into (docs/node.md)"
    )
    demo_dir = DETACHED_DIR / "demo"
    demo_dir.mkdir(exist_ok=True)
    env = {
        "KUBECONFIG": state["kubeconfig"],
        "MLFLOW_TRACKING_URI": state["mlflowUri"],
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }

    _say("2/7", "Install the CRDs and start the operator")
    _kubectl(state, "apply", "--server-side", "--force-conflicts", "-f", str(repo / "crds"))
    _kubectl(state, "wait", "--for=condition=Established", "-f", str(repo / "crds"))
    health = _free_port()
    _spawn(
        demo_dir,
        "operator",
        [
            sys.executable,
            "-m",
            "promptalias.cli.main",
            "operator",
            "--standalone",
            f"--health-listen=127.0.0.1:{health}",
        ],
        env,
    )
    _wait("the operator", lambda: _get_json(f"http://127.0.0.1:{health}/healthz") is not None)
    _info(f"operator running (log: {demo_dir / 'operator.log'})")

    _say("3/7", "Register invoice-parser v1-v4 in MLflow (v1-v3 approved)")
    os.environ.update(env)
    import logging

    import mlflow
    import mlflow.genai

    logging.getLogger("mlflow").setLevel(logging.WARNING)

    mlflow.set_tracking_uri(state["mlflowUri"])
    client = mlflow.MlflowClient()
    try:
        existing = len(client.search_prompt_versions(PROMPT).prompt_versions)
    except Exception:  # noqa: BLE001 - the prompt does not exist yet
        existing = 0
    for number, template in enumerate(TEMPLATES, start=1):
        if number > existing:
            tags = {"approved": "true"} if number < 4 else {"experimental": "true"}
            mlflow.genai.register_prompt(
                name=PROMPT, template=template, tags=tags, commit_message=f"invoice-parser v{number}"
            )
        _info(f"{template[:78]}...")

    _say("4/7", "Apply examples/invoice-parser: PromptRegistry + PromptAlias production -> 2")
    for manifest in sorted((repo / "examples" / "invoice-parser").glob("[0-2]*.yaml")):
        text = manifest.read_text().replace("${MLFLOW_TRACKING_URI}", state["mlflowUri"])
        _kubectl(state, "apply", "-f", "-", stdin=text)
    _wait(
        "production -> 2 in MLflow",
        lambda: client.get_prompt_version_by_alias(PROMPT, "production").version == 2,
    )
    _info("MLflow now answers prompts:/invoice-parser@production = version 2")

    _say("5/7", "Start the sidecar and the app (the app reads prompts:/invoice-parser/production)")
    prompts_dir = demo_dir / "prompts"
    sidecar_port, app_port = _free_port(), _free_port()
    _spawn(
        demo_dir,
        "sidecar",
        [
            sys.executable,
            "-m",
            "promptalias.sidecar.main",
            "--namespace",
            NAMESPACE,
            "--dir",
            str(prompts_dir),
            "--listen",
            f"127.0.0.1:{sidecar_port}",
            "--names",
            f"promptalias-{PA}",
        ],
        env,
    )
    app_env = {
        **env,
        "PROMPTALIAS_PROMPTS_DIR": str(prompts_dir),
        "PROMPTALIAS_SIDECAR_URL": f"http://127.0.0.1:{sidecar_port}",
        "PROMPTALIAS_CACHE_DIR": str(demo_dir / "cache"),
    }
    _spawn(
        demo_dir,
        "app",
        [sys.executable, str(repo / "examples" / "invoice-parser" / "app.py"), str(app_port)],
        app_env,
    )
    app = f"http://127.0.0.1:{app_port}/parse?text=ACME%20invoice%2042%20total%2099.50%20EUR"
    first = _wait("the app to serve version 2", lambda: (b := _get_json(app)) and b["version"] == 2 and b)
    _info(f"app (pid in {demo_dir}) answers: version {first['version']}: {first['prompt'][:80]}...")

    _say("6/7", "Move the alias: kubectl patch ... spec.version 3 (no restart, no redeploy)")
    for target, label in ((3, "apply v3"), (2, "roll back to v2")):
        _kubectl(
            state,
            "patch",
            "promptalias",
            PA,
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"version": target}}),
        )
        started = time.monotonic()
        _wait(f"the app to serve version {target}", lambda t=target: _get_json(app)["version"] == t)
        elapsed_ms = (time.monotonic() - started) * 1000
        alias_now = client.get_prompt_version_by_alias(PROMPT, "production").version
        _info(
            f"{label}: the running app served v{target} {elapsed_ms:.0f} ms after kubectl patch returned "
            f"(MLflow says production = v{alias_now})"
        )

    _say("7/7", "The audit trail (status.history) and Events")
    history = json.loads(_kubectl(state, "get", "promptalias", PA, "-n", NAMESPACE, "-o", "json"))["status"]
    for entry in history.get("history", []):
        _info(
            f"{entry['time']}  {entry['reason']:<14} "
            f"v{entry.get('previousVersion', '-')} -> v{entry['version']}"
            f"  by {entry.get('actor') or '-'}"
        )
    print(_kubectl(state, "get", "promptaliases", "-n", NAMESPACE))
    print(
        "What to try next (the testbed, operator, sidecar and app keep running):\n"
        '  eval "$(.venv/bin/promptalias testbed env)"\n'
        f"  kubectl get promptaliases -n {NAMESPACE}\n"
        f'  kubectl patch promptalias {PA} -n {NAMESPACE} --type=merge -p \'{{"spec":{{"version":4}}}}\''
        "   # refused: v4 lacks approved=true (PolicyViolation)\n"
        f"  .venv/bin/promptalias history {PA} -n {NAMESPACE}\n"
        f"  curl '{app}'\n"
        f"  # move staging in MLflow and watch the follow-mode resource record it:\n"
        '  .venv/bin/python -c "import mlflow.genai; '
        f"mlflow.genai.set_prompt_alias('{PROMPT}', 'staging', 3)\"\n"
        f"  kubectl get promptalias invoice-parser-staging -n {NAMESPACE} -o yaml\n"
        f"  MLflow UI: {state['mlflowUri']}    logs: {demo_dir}\n"
        "  stop everything: .venv/bin/promptalias testbed down   (or: make clean)"
    )
    return 0

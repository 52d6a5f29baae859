"""`promptalias demo` (`make demo`): the invoice-parser story end to end on the local testbed.

As pods when this machine can run the testbed's node (root, PROMPTALIAS_NODE != 0; docs/node.md):
the operator installed with `helm install` from charts/promptalias, the invoice app as a pod whose
sidecar the operator's admission webhook injects, MLflow reached by Service name through CoreDNS.
Otherwise (or when the node does not start) as local processes, with a line saying why. Either way
it moves the alias 2 -> 3 -> 2 and shows the running app switching without a restart, with the
measured latency. Everything keeps running afterwards for you to try things;
`promptalias testbed down` (or `make clean`) stops it all.

Over 400 lines on purpose: one story in two settings (pods, processes) read top to bottom; the
pod waits and kubectl calls it uses live in testbed/.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
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
    from promptalias.testbed.kubectl import run_kubectl

    result = run_kubectl(state["kubectl"], state["kubeconfig"], *args, stdin=stdin)
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


def _register_prompts(state: dict[str, str]) -> Any:
    import logging

    import mlflow
    import mlflow.genai

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ["MLFLOW_TRACKING_URI"] = state["mlflowUri"]
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
    return client


def _node_refusal() -> str:
    """Why the demo cannot run as pods here ('' when it can try)."""
    if os.environ.get("PROMPTALIAS_NODE", "1") == "0":
        return "PROMPTALIAS_NODE=0"
    if os.geteuid() != 0:
        return "not root: the node needs containerd, kubelet and iptables (docs/node.md)"
    return ""


def _start_testbed() -> str:
    """Start (or reuse) the detached testbed, with a node when possible; '' or why there is no node."""
    from promptalias.testbed import Testbed, TestbedError, detached_state

    state = detached_state()
    if state is not None:
        _info("reusing the running testbed")
        if "node" in state:
            return ""
        return "the running testbed has no node (`promptalias testbed down` and rerun for pods)"
    refusal = _node_refusal()
    if not refusal:
        try:
            Testbed.start(detached=True, node=True)
        except TestbedError as exc:
            refusal = f"the node did not start: {str(exc).splitlines()[0]}"
            _info(f"{refusal}; starting the testbed without it")
        else:
            return ""
    Testbed.start(detached=True)
    return refusal


def run(args: argparse.Namespace) -> int:
    from promptalias.testbed import TestbedError, detached_state

    _say("1/7", "Local control plane (kube-apiserver, etcd, controller-manager), MLflow, a node if possible")
    try:
        refusal = _start_testbed()
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
    if not refusal:
        _info(f"node {state['node']} Ready: the operator, the sidecar and the app run as pods")
        return _run_pods(state)
    _info(f"running the operator, sidecar and app as local processes, not pods: {refusal}")
    return _run_processes(state)


def _run_processes(state: dict[str, str]) -> int:
    from promptalias.testbed.bed import DETACHED_DIR

    repo = _repo()
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
    client = _register_prompts(state)

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
    _audit(state)
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


CHART_NAMESPACE = "promptalias"
APP_POD = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: invoice-parser, namespace: {NAMESPACE}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: invoice-app
  namespace: {NAMESPACE}
  annotations:
    promptalias.io/inject: "true"
    promptalias.io/prompts: promptalias-{PA}
spec:
  serviceAccountName: invoice-parser
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: app
      image: localhost/promptalias/invoice-app:latest
      imagePullPolicy: IfNotPresent
      env:
        - {{name: PROMPT_URI, value: "prompts:/{PROMPT}/production"}}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
"""
# Runs inside the app container: polls the app every 10 ms, prints `<CLOCK_MONOTONIC> <version>` on
# every change (containers share the host's monotonic clock: the latency needs no clock sync).
WATCHER = """
import json, sys, time, urllib.request as u
print("ready", flush=True)
last, end = None, time.monotonic() + 900
while time.monotonic() < end:
    try:
        v = json.load(u.urlopen("http://127.0.0.1:8080/parse?text=ACME%20invoice%2042", timeout=5))["version"]
    except Exception:
        v = None
    if v != last:
        print(f"{time.monotonic():.6f} {v}", flush=True)
        last = v
    time.sleep(0.01)
"""


def _run_pods(state: dict[str, str]) -> int:
    from promptalias.testbed.tools import helm

    repo = _repo()
    kubectl = [state["kubectl"], f"--kubeconfig={state['kubeconfig']}"]
    _say("2/7", "helm install the operator (charts/promptalias, the locally built image) with the webhook on")
    _kubectl(state, "apply", "-f", str(repo / "examples" / "invoice-parser" / "00-namespace.yaml"))
    _kubectl(
        state, "label", "--overwrite", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
    )
    chart = helm(Path(state["kubeconfig"]))
    installed = (
        chart.run("status", "promptalias", "--namespace", CHART_NAMESPACE, check=False).returncode == 0
    )
    rbac = {
        "invoice-parser": {"namespace": NAMESPACE, "serviceAccount": "invoice-parser", "promptAliases": [PA]}
    }
    chart.run(
        "upgrade" if installed else "install",
        "promptalias",
        str(repo / "charts" / "promptalias"),
        "--namespace",
        CHART_NAMESPACE,
        *([] if installed else ["--create-namespace"]),
        "--set",
        "webhook.enabled=true",
        "--set-json",
        f"sidecarRbac.apps={json.dumps(rbac)}",
        "--wait",
        "--timeout",
        "600s",
        timeout=700,
    )
    for line in _kubectl(state, "get", "pods", "-n", CHART_NAMESPACE, "-o", "wide").splitlines():
        _info(line)

    _say("3/7", "Register invoice-parser v1-v4 in MLflow (v1-v3 approved)")
    client = _register_prompts(state)

    cluster_uri = state.get("mlflowClusterUri", state["mlflowUri"])
    _say(
        "4/7", f"Apply examples/invoice-parser: PromptRegistry ({cluster_uri}) + PromptAlias production -> 2"
    )
    for manifest in sorted((repo / "examples" / "invoice-parser").glob("[1-2]*.yaml")):
        text = manifest.read_text().replace("${MLFLOW_TRACKING_URI}", cluster_uri)
        _kubectl(state, "apply", "-f", "-", stdin=text)
    _wait(
        "production -> 2 in MLflow",
        lambda: client.get_prompt_version_by_alias(PROMPT, "production").version == 2,
        timeout=300,
    )
    _info("the operator pod reached MLflow by its Service name (CoreDNS + kube-proxy) and set production = 2")

    _say("5/7", "Start the app pod (annotated promptalias.io/inject); the webhook adds the sidecar")
    _kubectl(state, "apply", "-f", "-", stdin=APP_POD)
    _kubectl(state, "wait", "-n", NAMESPACE, "pod/invoice-app", "--for=condition=Ready", "--timeout=600s")
    pod = json.loads(_kubectl(state, "get", "pod", "-n", NAMESPACE, "invoice-app", "-o", "json"))
    sidecars = [c["name"] for c in pod["spec"].get("initContainers") or []]
    _info(f"pod invoice-app on {pod['spec']['nodeName']} ({pod['status']['podIP']}): sidecar {sidecars}, app")

    watcher = subprocess.Popen(
        [*kubectl, "exec", "-n", NAMESPACE, "invoice-app", "-c", "app", "--", "python", "-c", WATCHER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in watcher.stdout or []:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def seen(target: int | None, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1).strip()
            except queue.Empty:
                continue
            if line == "ready":
                continue
            stamp, version = line.split()
            if target is None or version == str(target):
                return float(stamp)
        raise SystemExit(f"error: the app did not serve version {target} within {timeout:.0f}s")

    try:
        seen(2)
        _info("the app answers: version 2")
        _say("6/7", "Move the alias: kubectl patch ... spec.version 3 (no restart, no redeploy)")
        for target, label in ((3, "apply v3"), (2, "roll back to v2")):
            patch = json.dumps({"spec": {"version": target}})
            _kubectl(state, "patch", "promptalias", PA, "-n", NAMESPACE, "--type=merge", "-p", patch)
            returned = time.monotonic()
            elapsed_ms = (seen(target) - returned) * 1000
            alias_now = client.get_prompt_version_by_alias(PROMPT, "production").version
            _info(
                f"{label}: the app pod served v{target} {elapsed_ms:.0f} ms after kubectl patch returned "
                f"(MLflow says production = v{alias_now})"
            )
    finally:
        watcher.kill()
        watcher.wait(timeout=10)
    pod = json.loads(_kubectl(state, "get", "pod", "-n", NAMESPACE, "invoice-app", "-o", "json"))
    restarts = {
        s["name"]: s["restartCount"]
        for s in pod["status"]["containerStatuses"] + (pod["status"].get("initContainerStatuses") or [])
    }
    _info(f"container restarts: {restarts}")

    _say("7/7", "The audit trail (status.history) and Events")
    _audit(state)
    print(
        "What to try next (the testbed, its node, the operator and the app pod keep running):\n"
        '  eval "$(.venv/bin/promptalias testbed env)"\n'
        "  kubectl get pods -A -o wide\n"
        f"  kubectl get promptaliases -n {NAMESPACE}\n"
        f'  kubectl patch promptalias {PA} -n {NAMESPACE} --type=merge -p \'{{"spec":{{"version":4}}}}\''
        "   # refused: v4 lacks approved=true (PolicyViolation)\n"
        f"  kubectl logs -n {NAMESPACE} invoice-app -c promptalias-sidecar\n"
        f'  kubectl exec -n {NAMESPACE} invoice-app -c app -- python -c "import urllib.request as u; '
        "print(u.urlopen('http://127.0.0.1:8080/parse?text=ACME').read().decode())\"\n"
        f"  kubectl delete pod -n {CHART_NAMESPACE} -l app.kubernetes.io/instance=promptalias   # failover\n"
        f"  MLflow UI: {state['mlflowUri']}\n"
        "  stop everything: .venv/bin/promptalias testbed down   (or: make clean)"
    )
    return 0


def _audit(state: dict[str, str]) -> None:
    history = json.loads(_kubectl(state, "get", "promptalias", PA, "-n", NAMESPACE, "-o", "json"))["status"]
    for entry in history.get("history", []):
        _info(
            f"{entry['time']}  {entry['reason']:<14} "
            f"v{entry.get('previousVersion', '-')} -> v{entry['version']}"
            f"  by {entry.get('actor') or '-'}"
        )
    print(_kubectl(state, "get", "promptaliases", "-n", NAMESPACE))

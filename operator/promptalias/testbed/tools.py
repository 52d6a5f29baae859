"""Build (or reuse) the tools the chart and GitOps tests run: `helm` and a `kstatus` checker.

Both are built with `go build` from the wrapper module in hack/tools (which pins helm.sh/helm/v3 and
sigs.k8s.io/cli-utils) and cached by version under $HOME/.cache/promptalias/tools-<version>/, the
same way build.py caches the control plane: a manifest of sha256 sums, a lock so two sessions never
build into the same cache, progress lines while a cold build runs, errors that say what to do.

`python -m promptalias.testbed.tools` builds them and prints their paths (one `name=path` a line).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptalias.testbed.build import cache_root, find_source_root, manifest_valid
from promptalias.testbed.errors import TestbedError
from promptalias.testbed.gobuild import GoModuleBuild, GoTarget

HELM_VERSION = "v3.22.0"
CLI_UTILS_VERSION = "v0.37.2"  # sigs.k8s.io/cli-utils, whose pkg/kstatus/status Flux and kpt use
TOOLS_VERSION = f"helm-{HELM_VERSION}-kstatus-{CLI_UTILS_VERSION}"
MODULE_DIR = Path("hack") / "tools"
# helm's built-in default capabilities (what `helm template` and `helm lint` assume without a
# cluster) follow the release the testbed runs, so offline renders match what the tests install on.
_HELM_KUBE_MAJOR, _HELM_KUBE_MINOR = "1", "35"

# name -> (package, path relative to the module, extra ldflags)
_TARGETS: dict[str, tuple[str, str]] = {
    "helm": (
        "helm.sh/helm/v3/cmd/helm",
        f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION} "
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean "
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={_HELM_KUBE_MAJOR} "
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={_HELM_KUBE_MINOR} "
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={_HELM_KUBE_MAJOR} "
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={_HELM_KUBE_MINOR}",
    ),
    "kstatus": ("./kstatus", ""),
}
TOOLS = tuple(_TARGETS)
# Files whose change must rebuild the tools (the pinned versions and our own program).
_INPUT_FILES = ("go.mod", "go.sum", "kstatus/main.go")
_ENV_OVERRIDE = "PROMPTALIAS_TOOLS_DIR"


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the built tools."""

    helm: Path
    kstatus: Path


TOOLS_BUILD = GoModuleBuild(
    what="helm and kstatus",
    module=MODULE_DIR,
    cache_name=f"tools-{TOOLS_VERSION}",
    version_key="toolsVersion",
    version=TOOLS_VERSION,
    targets=tuple(GoTarget(name, package, ldflags) for name, (package, ldflags) in _TARGETS.items()),
    digest_seed=TOOLS_VERSION,
    digest_files=_INPUT_FILES,
    digest_names=True,
    manifest_extra={"helmVersion": HELM_VERSION, "cliUtilsVersion": CLI_UTILS_VERSION},
    env={"CGO_ENABLED": "0"},  # static binaries: the cache keeps working after system library updates
    cold_hint="cold: ~2-4 min on 2 cores",
    remedy="check Go >= 1.26 and access to the Go module proxy, then rerun; "
    f"or set {_ENV_OVERRIDE} to prebuilt binaries",
    go_hint=f"install Go >= 1.26 (helm {HELM_VERSION} requires it), "
    f"or set {_ENV_OVERRIDE} to a directory holding `helm` and `kstatus`",
)


def tools_cache() -> Path:
    return TOOLS_BUILD.cache


def _inputs_digest(module: Path) -> str:
    return TOOLS_BUILD.inputs_digest(module)


def _cache_valid(cache: Path, inputs: str | None) -> bool:
    return manifest_valid(cache, inputs, version_key="toolsVersion", version=TOOLS_VERSION, names=TOOLS)


def ensure_tools() -> Tools:
    """Return usable helm and kstatus binaries, building them only when no valid copy exists.

    PROMPTALIAS_TOOLS_DIR wins when it holds both programs (e.g. CI images with a prebuilt helm);
    otherwise the version cache is used, verified by sha256 and rebuilt when stale or corrupt
    (the shared Go builder, testbed/gobuild.py).
    """
    if override := os.environ.get(_ENV_OVERRIDE):
        directory = Path(override)
        missing = [name for name in TOOLS if not os.access(directory / name, os.X_OK)]
        if missing:
            raise TestbedError(
                "find helm and kstatus",
                f"{_ENV_OVERRIDE}={directory} lacks executable {', '.join(missing)}",
                f"unset {_ENV_OVERRIDE} to build them from hack/tools",
            )
        return Tools(helm=directory / "helm", kstatus=directory / "kstatus")
    bin_dir = TOOLS_BUILD.ensure()
    return Tools(helm=bin_dir / "helm", kstatus=bin_dir / "kstatus")


@dataclass(frozen=True)
class Helm:
    """The built helm, isolated from the user's helm config, optionally bound to a kubeconfig."""

    path: Path
    kubeconfig: Path | None = None

    def env(self) -> dict[str, str]:
        home = cache_root() / "helm-home"  # never read or write the user's repositories and plugins
        env = dict(os.environ)
        env.update(
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.path), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise TestbedError(f"helm {' '.join(args)}", (result.stderr or result.stdout).strip())
        return result

    def template(
        self,
        chart: Path,
        *,
        release: str = "promptalias",
        namespace: str = "promptalias-system",
        values: Iterable[Path] = (),
        set_json: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """`helm template` the chart and return the rendered objects (empty documents dropped)."""
        import yaml

        args = ["template", release, str(chart), "--namespace", namespace]
        for path in values:
            args += ["--values", str(path)]
        for key, value in (set_json or {}).items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        return [doc for doc in yaml.safe_load_all(self.run(*args).stdout) if doc]


def helm(kubeconfig: Path | None = None) -> Helm:
    """The cached helm (built on first use), bound to `kubeconfig` when given."""
    return Helm(ensure_tools().helm, kubeconfig)


def kstatus(obj: Mapping[str, Any], tools: Tools | None = None) -> dict[str, Any]:
    """What sigs.k8s.io/cli-utils' kstatus (Flux's readiness logic) computes for `obj`:
    {"status": "Current" | "InProgress" | "Failed" | "Terminating" | ..., "message", "conditions"}."""
    program = (tools or ensure_tools()).kstatus
    result = subprocess.run(
        [str(program)], input=json.dumps(obj), capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise TestbedError("kstatus", result.stderr.strip() or f"exit {result.returncode}")
    computed: dict[str, Any] = json.loads(result.stdout)
    return computed


# Argo CD runs health.lua in gopher-lua (Lua 5.1) and, for custom checks, opens only the base,
# table and package libraries plus a "safe" os (time, date, clock): no string, math, io or debug.
# Without the string library gopher-lua strings have no methods either, so the metatable goes too.
_ARGO_SANDBOX = """
local script, name = ...
local safe_os = {time = os.time, date = os.date, clock = os.clock}
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  print = print, rawequal = rawequal, rawget = rawget, rawset = rawset, select = select,
  setmetatable = setmetatable, getmetatable = getmetatable, tonumber = tonumber,
  tostring = tostring, type = type, unpack = unpack, xpcall = xpcall, _VERSION = _VERSION,
  table = table, os = safe_os,
}
env._G = env
debug.setmetatable("", nil)
local chunk, err = loadstring(script, "=" .. name)
if chunk == nil then error(err) end
setfenv(chunk, env)
return function(obj)
  env.obj = obj
  return chunk()
end
"""
ARGO_HEALTH_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})


class ArgoHealth:
    """Runs one Argo CD health.lua the way Argo CD does, in a real Lua 5.1 (lupa, a dev dependency)."""

    def __init__(self, script: Path) -> None:
        import lupa.lua51  # type: ignore[import-untyped]  # no stubs; the Lua side is untyped anyway

        self._lupa: Any = lupa.lua51
        self._lua: Any = lupa.lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
        self._run: Any = self._lua.execute(_ARGO_SANDBOX, script.read_text(), script.as_posix())

    @property
    def error(self) -> type[Exception]:
        """The exception a failing script raises."""
        error: type[Exception] = self._lupa.LuaError
        return error

    def _table(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self._lua.table_from({k: self._table(v) for k, v in value.items()})
        if isinstance(value, list):
            return self._lua.table_from([self._table(v) for v in value])
        return value

    def __call__(self, obj: Mapping[str, Any]) -> dict[str, str]:
        # Argo CD hands the script the object as decoded JSON: timestamps are strings, numbers doubles.
        plain = json.loads(json.dumps(obj, default=str))
        result = self._run(self._table(plain))
        if self._lupa.lua_type(result) != "table":
            raise TestbedError(
                "argo cd health", f"health.lua returned {self._lupa.lua_type(result)}, not a table"
            )
        status = {str(k): str(v) for k, v in result.items()}
        if status.get("status") not in ARGO_HEALTH_STATUSES:  # what Argo CD does with it
            return {"status": "Unknown", "message": "Lua returned an invalid health status"}
        return status


def _source_root() -> Path:
    try:
        return find_source_root()
    except TestbedError:
        return Path.cwd()


def health(
    resource: str, namespace: str | None, kubectl: str = "kubectl", kubeconfig: Path | None = None
) -> dict[str, Any]:
    """kstatus and Argo CD health of one live object (`kubectl get RESOURCE -o json`)."""
    argv = [kubectl, "get", resource, "-o", "json"]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    if namespace:
        argv += ["--namespace", namespace]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise TestbedError(f"kubectl get {resource}", result.stderr.strip())
    obj: dict[str, Any] = json.loads(result.stdout)
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    script = (
        _source_root() / "gitops" / "argocd" / "resource_customizations" / group / obj["kind"] / "health.lua"
    )
    argo = ArgoHealth(script)(obj) if script.is_file() else {"status": "(no health.lua for this kind)"}
    return {"kstatus": kstatus(obj), "argocd": argo}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m promptalias.testbed.tools",
        description="Build (or reuse) helm and kstatus, or show how Flux and Argo CD read health.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("build", help="build or reuse helm and kstatus and print their paths (the default)")
    show = sub.add_parser(
        "health", help="kstatus and Argo CD health of a live object, e.g. pa/invoice-parser"
    )
    show.add_argument("resource", help="what `kubectl get` takes: KIND/NAME")
    show.add_argument("--namespace", "-n", default=None)
    show.add_argument("--kubectl", default="kubectl", help="the kubectl to use (default: from PATH)")
    args = parser.parse_args(argv)
    try:
        if args.command == "health":
            print(json.dumps(health(args.resource, args.namespace, args.kubectl), indent=2))
            return 0
        tools = ensure_tools()
    except TestbedError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"helm={tools.helm}\nkstatus={tools.kstatus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

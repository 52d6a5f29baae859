"""`promptalias get|history|rollback|takeover|diff|versions`, also run as `kubectl promptalias ...`.

The binary is installed as both `promptalias` and `kubectl-promptalias`, so kubectl finds it as a
plugin and passes the arguments through untouched. The pure parts (tables, ages, GitOps detection,
the Git change to print, template diffs) are plain functions tested without a cluster. `_Cluster`
is the one place that talks to the Kubernetes API and turns its failures into a `CliError` that says
what went wrong and what to do. Heavy modules (kubernetes; aiohttp through promptalias.registry)
are imported only by the commands that need them.

Exit codes: 0 done; 1 `diff` found differences, or the operator did not finish a request in time;
2 an error (nothing reachable, no such object, bad arguments); 3 `rollback` refused because Git
owns the object (Argo CD / Flux) and `--force` was not given.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from promptalias.reconcile.gitops import GitOpsOwner, detect_gitops
from promptalias.reconcile.timestamps import parse_timestamp
from promptalias.vocabulary import (
    API_VERSION,
    CLI_FIELD_MANAGER,
    GROUP,
    OWNER_TAG_PREFIX,
    ROLLBACK_ANNOTATION,
    TAKEOVER_ANNOTATION,
    VERSION,
    is_internal_tag,
)

if TYPE_CHECKING:
    from promptalias.registry import MlflowRegistry, PromptState, PromptVersion, RegistryConfig

EXIT_OK: Final = 0
EXIT_PENDING: Final = 1  # also: `diff` found differences
EXIT_ERROR: Final = 2
EXIT_GITOPS: Final = 3

PLURAL: Final = "promptaliases"
FOLLOW: Final = "follow"
NONE: Final = "<none>"
DEFAULT_WAIT_S: Final = 60.0
CONSUMED_GRACE_S: Final = 5.0  # a consumed request's result shows in status moments later

GET_HEADERS: Final = ("NAMESPACE", "NAME", "PROMPT", "ALIAS", "DESIRED", "RESOLVED", "READY", "REASON", "AGE")
HISTORY_HEADERS: Final = ("TIME", "REASON", "FROM→TO", "ACTOR", "MESSAGE")
VERSION_HEADERS: Final = ("VERSION", "CREATED", "ALIASES", "TAGS", "MESSAGE")
OWNER_HEADERS: Final = ("ALIAS", "VERSION", "MANAGED BY")


class CliError(Exception):
    """A failure the user can act on: printed as `error: <problem>; <remedy>`, never as a traceback."""

    def __init__(self, problem: str, remedy: str, code: int = EXIT_ERROR) -> None:
        super().__init__(f"{problem}; {remedy}")
        self.problem = problem
        self.remedy = remedy
        self.code = code


# ---- pure helpers: time and tables ----------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def age(value: Any, now: datetime) -> str:
    stamp = parse_timestamp(value)
    return "<unknown>" if stamp is None else human_duration((now - stamp).total_seconds())


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart, no trailing blanks."""
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table]
    return "\n".join(lines) + "\n"


def _dig(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str:
    return NONE if value is None or value == "" else str(value)


def find_condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in _dig(obj, "status", "conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def alias_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    """One PromptAlias in GET_HEADERS order."""
    ready = find_condition(obj, "Ready")
    version = _dig(obj, "spec", "version")
    return [
        _text(_dig(obj, "metadata", "namespace")),
        _text(_dig(obj, "metadata", "name")),
        _text(_dig(obj, "spec", "prompt")),
        _text(_dig(obj, "spec", "alias")),
        FOLLOW if version is None else str(version),
        _text(_dig(obj, "status", "resolvedVersion")),
        str(ready.get("status", "Unknown")) if ready else "Unknown",
        _text(ready.get("reason")) if ready else NONE,
        age(_dig(obj, "metadata", "creationTimestamp"), now),
    ]


def alias_table(items: Sequence[Mapping[str, Any]], now: datetime, *, all_namespaces: bool) -> str:
    """The `get` table; like kubectl, the NAMESPACE column only with --all-namespaces."""
    ordered = sorted(
        items, key=lambda o: (str(_dig(o, "metadata", "namespace")), str(_dig(o, "metadata", "name")))
    )
    rows = [alias_row(obj, now) for obj in ordered]
    if all_namespaces:
        return render_table(GET_HEADERS, rows)
    return render_table(GET_HEADERS[1:], [row[1:] for row in rows])


def _move(previous: Any, version: Any) -> str:
    return f"{'-' if previous is None else previous}→{'-' if version is None else version}"


def history_table(history: Sequence[Mapping[str, Any]]) -> str:
    """status.history (oldest first, as stored) in HISTORY_HEADERS order."""
    rows = [
        [
            _text(entry.get("time")),
            _text(entry.get("reason")),
            _move(entry.get("previousVersion"), entry.get("version")),
            _text(entry.get("actor")),
            " ".join(str(entry.get("message") or "").split()),
        ]
        for entry in history
    ]
    return render_table(HISTORY_HEADERS, rows)


# ---- pure helpers: the Git change (detection: reconcile/gitops.py) ------------------------------


def git_change(obj: Mapping[str, Any], target: int, owner: GitOpsOwner) -> str:
    """The change to make in Git instead of a live patch: a YAML snippet, with comments."""
    name = _dig(obj, "metadata", "name")
    namespace = _dig(obj, "metadata", "namespace")
    current = _dig(obj, "spec", "version")
    if owner.kind == "HelmRelease":
        where = (
            f"# In the values of HelmRelease {owner.namespace or '<namespace>'}/{owner.name}, change the "
            "value that renders\n# spec.version of this PromptAlias so that the rendered object reads:\n"
        )
    else:
        where = "# In the manifest of this PromptAlias in Git, set spec.version:\n"
    header = (
        f"# PromptAlias {namespace}/{name} is applied from Git by {owner}; a live patch would be\n"
        "# reverted at the next sync, so make the rollback a Git change:\n" + where
    )
    was = f"  # was {current}" if current is not None else ""
    body = (
        f"apiVersion: {API_VERSION}\n"
        "kind: PromptAlias\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"  namespace: {namespace}\n"
        "spec:\n"
        f"  version: {target}{was}\n"
    )
    footer = f"# then commit, push, and sync: {owner.sync_hint}\n"
    return header + body + footer


# ---- pure helpers: templates and versions ---------------------------------------------------------


def template_lines(
    template: str | Sequence[Mapping[str, Any]],
    response_format: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """A prompt version as diffable lines: text as is, chat messages under `[role]` headers, then
    response_format and model_config as sorted JSON when present."""
    lines: list[str] = []
    if isinstance(template, str):
        lines.extend(template.splitlines())
    else:
        for message in template:
            lines.append(f"[{message.get('role')}]")
            lines.extend(str(message.get("content", "")).splitlines())
    for title, extra in (("response_format", response_format), ("model_config", model_config)):
        if extra:
            lines.extend(["", f"[{title}]", *json.dumps(extra, indent=2, sort_keys=True).splitlines()])
    return [line + "\n" for line in lines]


def unified_diff(old_label: str, old: Sequence[str], new_label: str, new: Sequence[str]) -> str:
    return "".join(difflib.unified_diff(list(old), list(new), fromfile=old_label, tofile=new_label))


def aliases_by_version(aliases: Mapping[str, int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        found.setdefault(int(version), []).append(alias)
    return found


def owner_text(tag_value: str | None) -> str:
    """The MLflow owner tag ({cluster, namespace, name}) as cluster/namespace/name."""
    if not tag_value:
        return "-"
    try:
        data = json.loads(tag_value)
        return f"{data['cluster']}/{data['namespace']}/{data['name']}"
    except (ValueError, KeyError, TypeError):
        return tag_value


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Version tags without promptalias' own bookkeeping (audit and owner marks)."""
    return {key: value for key, value in tags.items() if not is_internal_tag(key)}


def versions_table(
    versions: Sequence[PromptVersion], aliases: Mapping[str, int], tags: Mapping[str, str]
) -> str:
    """Versions (newest first) with the aliases on each; then who manages each alias."""
    by_version = aliases_by_version(aliases)
    rows = [
        [
            str(v.version),
            v.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ",".join(by_version.get(v.version, [])) or "-",
            ",".join(f"{k}={val}" for k, val in sorted(user_tags(v.tags).items())) or "-",
            " ".join((v.commit_message or "").split()) or "-",
        ]
        for v in sorted(versions, key=lambda v: v.version, reverse=True)
    ]
    text = render_table(VERSION_HEADERS, rows)
    if aliases:
        owners = [
            [alias, str(version), owner_text(tags.get(OWNER_TAG_PREFIX + alias))]
            for alias, version in sorted(aliases.items())
        ]
        text += "\n" + render_table(OWNER_HEADERS, owners)
    return text


def registry_config(
    tracking_uri: str,
    env: Mapping[str, str],
    *,
    workspace: str | None = None,
    insecure_skip_verify: bool = False,
    timeout_s: float = 10.0,
) -> RegistryConfig:
    """Connection settings for the user's own MLflow access: the URI from the registry (or
    --registry-uri), credentials and TLS from the MLFLOW_TRACKING_* variables MLflow's client reads."""
    from promptalias.registry import RegistryConfig

    username = env.get("MLFLOW_TRACKING_USERNAME") or None
    password = env.get("MLFLOW_TRACKING_PASSWORD") or None
    if (username is None) != (password is None):
        raise CliError(
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set together",
            "set both (Basic auth), or unset both and use MLFLOW_TRACKING_TOKEN",
        )
    insecure = env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in {"1", "true", "yes"}
    try:
        return RegistryConfig(
            tracking_uri=tracking_uri,
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            username=username,
            password=password,
            ca_file=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
            insecure_skip_verify=insecure_skip_verify or insecure,
            timeout_s=timeout_s,
            workspace=workspace,
        )
    except ValueError as exc:
        raise CliError(
            f"cannot use MLflow at {tracking_uri!r}: {exc}",
            "pass --registry-uri with the server's http(s) URL",
        ) from None


# ---- the Kubernetes API ---------------------------------------------------------------------------


class _Cluster:
    """The user's cluster, through their kubeconfig; every failure becomes a CliError."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        cfg = client.Configuration()
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False
            )
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise CliError(
                f"no usable Kubernetes configuration in {where} ({' '.join(str(exc).split())})",
                "point KUBECONFIG (or --kubeconfig) at a kubeconfig for your cluster, e.g. "
                '`eval "$(promptalias testbed env)"` for the local testbed',
            ) from None
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        self.default_namespace = str(_dig(chosen or {}, "context", "namespace") or "default")
        cfg.retries = 0  # fail fast with a clear message instead of urllib3's silent retries
        self.host = str(cfg.host)
        self.api_client = client.ApiClient(cfg)
        self.custom = client.CustomObjectsApi(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=(5, 30), **kwargs)
        except ApiException as exc:
            raise self._api_error(what, exc) from None
        except (HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise CliError(
                f"cannot reach the Kubernetes API server at {self.host} ({' '.join(str(reason).split())})",
                "check that the cluster is up and that KUBECONFIG / --context point at it "
                "(`kubectl cluster-info`)",
            ) from None

    def _api_error(self, what: str, exc: Any) -> CliError:
        status = int(exc.status or 0)
        try:
            body = json.loads(exc.body or "{}")
        except ValueError:
            body = {}
        message = str(body.get("message") or exc.reason or "error")
        if status == 404 and not _dig(body, "details", "name"):
            return CliError(
                f"the PromptAlias API ({PLURAL}.{GROUP}) is not installed in the cluster at {self.host}",
                "install the CRDs (helm install promptalias charts/promptalias, or kubectl apply -f crds/)",
            )
        if status == 404:
            return CliError(f"{what}: not found", "check the name and the namespace (-n)")
        if status == 401:
            return CliError(
                f"the cluster at {self.host} refused your credentials (401)",
                "refresh them (log in again) or fix the user in your kubeconfig",
            )
        if status == 403:
            return CliError(
                f"{what}: forbidden ({message})", "ask a cluster admin for RBAC access to promptaliases"
            )
        return CliError(f"{what}: the API server answered {status} ({message})", "try again")

    def list_aliases(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            got = self._call(
                "list PromptAliases", self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
            )
        else:
            got = self._call(
                f"list PromptAliases in namespace {namespace!r}",
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
            )
        items: list[dict[str, Any]] = got.get("items", [])
        return items

    def get_alias(self, namespace: str, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self._call(
            f"PromptAlias {name!r} in namespace {namespace!r}",
            self.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )
        return got

    def patch_alias(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        got: dict[str, Any] = self._call(
            f"patch PromptAlias {name!r} in namespace {namespace!r}",
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            dict(patch),
            field_manager=CLI_FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )
        return got

    def latest_warning(self, namespace: str, name: str, since: datetime) -> str | None:
        """`reason: message` of the newest Warning Event about the PromptAlias since `since`."""
        from kubernetes import client

        try:
            events = self._call(
                "list Events",
                client.CoreV1Api(self.api_client).list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.name={name},involvedObject.kind=PromptAlias,type=Warning",
            )
        except CliError:
            return None  # a hint only: lacking RBAC for Events must not hide the real message
        found = []
        for event in events.items:
            stamp = event.last_timestamp or event.event_time or event.first_timestamp
            stamp = parse_timestamp(stamp)
            if stamp is not None and stamp >= since.replace(microsecond=0):
                found.append((stamp, f"{event.reason}: {' '.join(str(event.message or '').split())}"))
        return max(found)[1] if found else None

    def get_registry(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if kind == "ClusterPromptRegistry":
            got = self._call(
                f"ClusterPromptRegistry {name!r}",
                self.custom.get_cluster_custom_object,
                GROUP,
                VERSION,
                "clusterpromptregistries",
                name,
            )
        else:
            got = self._call(
                f"PromptRegistry {name!r} in namespace {namespace!r}",
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "promptregistries",
                name,
            )
        result: dict[str, Any] = got
        return result


# ---- MLflow -----------------------------------------------------------------------------------


def _registry_error(exc: Exception, uri: str) -> CliError:
    from promptalias.registry import PromptNotFound, RegistryAuthError, RegistryNotFound, RegistryUnavailable

    text = " ".join(str(exc).split())
    if isinstance(exc, RegistryAuthError):
        return CliError(
            text,
            "set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
            "to credentials MLflow accepts (the CLI never reads the operator's Secret)",
        )
    if isinstance(exc, RegistryUnavailable):
        return CliError(
            text,
            f"if {uri} only resolves inside the cluster, port-forward the MLflow Service "
            "(kubectl port-forward svc/<mlflow> 5000) and pass --registry-uri http://127.0.0.1:5000",
        )
    if isinstance(exc, PromptNotFound | RegistryNotFound):
        return CliError(text, "list the versions with `promptalias versions <prompt>`")
    return CliError(text, "check the registry URI and the MLflow server")


async def _with_registry(config: RegistryConfig, work: Callable[[MlflowRegistry], Any]) -> Any:
    from promptalias.registry import MlflowRegistry, VersionCache

    async with MlflowRegistry(config, cache=VersionCache()) as registry:
        return await work(registry)


def _run_registry(config: RegistryConfig, work: Callable[[MlflowRegistry], Any]) -> Any:
    from promptalias.registry import RegistryError

    try:
        return asyncio.run(_with_registry(config, work))
    except RegistryError as exc:
        raise _registry_error(exc, config.tracking_uri) from None


def _registry_for_alias(
    cluster: _Cluster, obj: Mapping[str, Any], override_uri: str | None, timeout_s: float
) -> RegistryConfig:
    namespace = str(_dig(obj, "metadata", "namespace"))
    ref = _dig(obj, "spec", "registryRef") or {}
    kind = str(ref.get("kind") or "PromptRegistry")
    registry = cluster.get_registry(kind, namespace, str(ref.get("name")))
    spec = registry.get("spec") or {}
    uri = override_uri or str(spec.get("trackingUri") or "")
    return registry_config(
        uri,
        os.environ,
        workspace=spec.get("workspace"),
        insecure_skip_verify=bool(_dig(spec, "tls", "insecureSkipVerify")),
        timeout_s=timeout_s,
    )


# ---- commands -------------------------------------------------------------------------------------


def _output(data: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")


def _now() -> datetime:
    return datetime.now(UTC)


def _namespace(args: argparse.Namespace, cluster: _Cluster) -> str:
    return str(args.namespace or cluster.default_namespace)


def cmd_get(args: argparse.Namespace, cluster: _Cluster) -> int:
    if args.name and args.all_namespaces:
        raise CliError("a NAME cannot be combined with --all-namespaces", "give -n NAMESPACE instead")
    namespace = None if args.all_namespaces else _namespace(args, cluster)
    if args.name:
        assert namespace is not None
        items = [cluster.get_alias(namespace, args.name)]
    else:
        items = cluster.list_aliases(namespace)
    if args.output in ("json", "yaml"):
        data: Any = items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items}
        _output(data, args.output)
        return EXIT_OK
    if not items:
        where = f"in {namespace} namespace" if namespace else "in any namespace"
        print(f"No PromptAliases found {where}.", file=sys.stderr)
        return EXIT_OK
    print(alias_table(items, _now(), all_namespaces=args.all_namespaces), end="")
    return EXIT_OK


def cmd_history(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    history = list(_dig(obj, "status", "history") or [])
    if args.output in ("json", "yaml"):
        _output(history, args.output)
        return EXIT_OK
    if not history:
        print(f"No history recorded yet for PromptAlias {namespace}/{args.name}.", file=sys.stderr)
        return EXIT_OK
    print(history_table(history), end="")
    return EXIT_OK


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _dig(obj, "metadata", "annotations") or {}


def _ready_text(obj: Mapping[str, Any]) -> str:
    ready = find_condition(obj, "Ready")
    if ready is None:
        return "Ready is not reported yet"
    return f"Ready={ready.get('status')} {ready.get('reason')}: {ready.get('message')}"


def _stalled(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a Stalled=True condition, or None."""
    stalled = find_condition(obj, "Stalled")
    if stalled is None or stalled.get("status") != "True":
        return None
    return str(stalled.get("reason")), str(stalled.get("message"))


def _one_shot(
    cluster: _Cluster,
    obj: Mapping[str, Any],
    annotation: str,
    value: str,
    succeeded: Callable[[Mapping[str, Any]], bool],
    timeout_s: float,
) -> Mapping[str, Any]:
    """Ask the operator for a one-shot action (an annotation it performs and then removes) and wait
    until it is done. A Stalled condition that appears while the request is pending is a refusal:
    the request is withdrawn so that it cannot wedge the resource, and the reason is reported."""
    namespace = str(_dig(obj, "metadata", "namespace"))
    name = str(_dig(obj, "metadata", "name"))
    stalled_before = _stalled(obj)
    asked = _now()
    cluster.patch_alias(namespace, name, {"metadata": {"annotations": {annotation: value}}})
    deadline = time.monotonic() + timeout_s
    consumed: float | None = None
    while True:
        current = cluster.get_alias(namespace, name)
        pending = annotation in _annotations(current)
        if not pending and succeeded(current):
            return current
        stalled = _stalled(current)
        if pending and stalled is not None and stalled != stalled_before:
            cluster.patch_alias(namespace, name, {"metadata": {"annotations": {annotation: None}}})
            raise CliError(
                f"the operator refused the request ({stalled[0]}: {stalled[1]})",
                f"the request was withdrawn ({annotation} removed); fix the cause and try again",
                code=EXIT_PENDING,
            )
        now = time.monotonic()
        if not pending:
            # Consumed; the status is written just after. Give it a moment, then say what happened.
            consumed = consumed or now
            if now - consumed > CONSUMED_GRACE_S:
                warning = cluster.latest_warning(namespace, name, asked)
                raise CliError(
                    f"the operator took the request, but the result is not the one asked for "
                    f"({_ready_text(current)})" + (f"; last warning: {warning}" if warning else ""),
                    f"see the Events: kubectl describe promptalias {name} -n {namespace}",
                    code=EXIT_PENDING,
                )
        elif now >= deadline:
            raise CliError(
                f"the operator did not act on the request within {timeout_s:g}s ({_ready_text(current)})",
                f"check that the operator runs; the request stays in the annotation {annotation} "
                f"(cancel it: kubectl annotate promptalias {name} -n {namespace} {annotation}-)",
                code=EXIT_PENDING,
            )
        time.sleep(0.2)


def _wait(
    cluster: _Cluster,
    namespace: str,
    name: str,
    done: Callable[[Mapping[str, Any]], bool],
    failed: Callable[[Mapping[str, Any]], str | None],
    timeout_s: float,
    pending: str,
) -> Mapping[str, Any]:
    """Poll the object until `done`; `failed` returning a message ends the wait with an error."""
    deadline = time.monotonic() + timeout_s
    while True:
        obj = cluster.get_alias(namespace, name)
        if done(obj):
            return obj
        problem = failed(obj)
        if problem is not None:
            raise CliError(problem, "fix the cause and try again", code=EXIT_PENDING)
        if time.monotonic() >= deadline:
            raise CliError(
                f"the operator did not finish within {timeout_s:g}s ({_ready_text(obj)})",
                pending,
                code=EXIT_PENDING,
            )
        time.sleep(0.2)


def cmd_rollback(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    ref = f"{namespace}/{args.name}"
    uri = f"prompts:/{_dig(obj, 'spec', 'prompt')}@{_dig(obj, 'spec', 'alias')}"
    target = args.to if args.to is not None else _dig(obj, "status", "previousVersion")
    if target is None:
        raise CliError(
            f"PromptAlias {ref} has no previous version recorded",
            f"name the version with --to N (see `promptalias history {args.name} -n {namespace}`)",
        )
    target = int(target)
    if _dig(obj, "spec", "version") is None:
        return _rollback_follow(args, cluster, obj, namespace, target, uri)
    return _rollback_pinned(args, cluster, obj, namespace, target, uri)


def _rollback_follow(
    args: argparse.Namespace,
    cluster: _Cluster,
    obj: Mapping[str, Any],
    namespace: str,
    target: int,
    uri: str,
) -> int:
    """Follow mode: MLflow owns the alias, so the rollback happens there; the operator does it
    (with its registry credentials) when asked through the one-shot annotation, and records it."""
    current = _dig(obj, "status", "resolvedVersion")
    if current == target:
        print(f"{uri} already points at version {target}; nothing to roll back")
        return EXIT_OK
    value = str(target)
    if args.no_wait:
        request = {"metadata": {"annotations": {ROLLBACK_ANNOTATION: value}}}
        cluster.patch_alias(namespace, args.name, request)
        print(f"requested rollback of {uri} to version {target} (the operator moves the MLflow alias)")
        return EXIT_OK
    print(f"requested rollback of {uri} to version {target} (the operator moves the MLflow alias)")
    _one_shot(
        cluster,
        obj,
        ROLLBACK_ANNOTATION,
        value,
        lambda o: _dig(o, "status", "resolvedVersion") == target,
        args.timeout,
    )
    print(f"rolled back {uri}: version {_text(current)} → {target} (MLflow alias moved; history: Rollback)")
    return EXIT_OK


def _rollback_pinned(
    args: argparse.Namespace,
    cluster: _Cluster,
    obj: Mapping[str, Any],
    namespace: str,
    target: int,
    uri: str,
) -> int:
    """Pinned mode: Git owns the alias through spec.version, so the rollback is a spec change —
    unless a GitOps tool applies the object, which would revert a live patch."""
    desired = int(_dig(obj, "spec", "version"))
    if desired == target:
        print(f"spec.version of {namespace}/{args.name} is already {target}; nothing to roll back")
        return EXIT_OK
    owner = detect_gitops(_dig(obj, "metadata") or {})
    if owner is not None:
        if not args.force:
            print(
                f"warning: {namespace}/{args.name} is managed by {owner}; not patching it (a live patch "
                "would be reverted at the next sync). Make this change in Git, or pass --force:",
                file=sys.stderr,
            )
            print(git_change(obj, target, owner), end="")
            return EXIT_GITOPS
        print(
            f"warning: --force: patching {namespace}/{args.name} although {owner} manages it; it will "
            "revert this at its next sync unless Git changes too",
            file=sys.stderr,
        )
    patched = cluster.patch_alias(namespace, args.name, {"spec": {"version": target}})
    generation = int(_dig(patched, "metadata", "generation") or 0)
    print(f"patched {namespace}/{args.name}: spec.version {desired} → {target}")
    if args.no_wait:
        return EXIT_OK

    def done(o: Mapping[str, Any]) -> bool:
        ready = find_condition(o, "Ready")
        return (
            int(_dig(o, "status", "observedGeneration") or 0) >= generation
            and _dig(o, "status", "resolvedVersion") == target
            and ready is not None
            and ready.get("status") == "True"
        )

    def failed(o: Mapping[str, Any]) -> str | None:
        stalled = find_condition(o, "Stalled")
        if (
            stalled is not None
            and stalled.get("status") == "True"
            and int(stalled.get("observedGeneration") or 0) >= generation
        ):
            return f"the operator cannot apply version {target}: {stalled.get('message')}"
        return None

    _wait(cluster, namespace, args.name, done, failed, args.timeout, "check that the operator runs")
    print(f"rolled back {uri}: MLflow alias now points at version {target}")
    return EXIT_OK


def cmd_takeover(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    ref = f"{namespace}/{args.name}"
    if _dig(obj, "spec", "version") is None:
        raise CliError(
            f"PromptAlias {ref} follows MLflow (no spec.version): it never writes the alias, so it "
            "needs no ownership",
            "set spec.version to manage the alias, then take it over",
        )
    ready = find_condition(obj, "Ready") or {}
    if ready.get("reason") != "OwnedElsewhere" and TAKEOVER_ANNOTATION not in _annotations(obj):
        print(f"{ref} is not blocked by another owner ({_ready_text(obj)}); nothing to take over")
        return EXIT_OK
    previous_owner = _dig(obj, "status", "owner")
    print(f"requested takeover of {ref}" + (f" from {previous_owner}" if previous_owner else ""))
    if args.no_wait:
        cluster.patch_alias(
            namespace, args.name, {"metadata": {"annotations": {TAKEOVER_ANNOTATION: "true"}}}
        )
        return EXIT_OK

    def taken(o: Mapping[str, Any]) -> bool:
        ready = find_condition(o, "Ready") or {}
        return ready.get("status") == "True"

    result = _one_shot(cluster, obj, TAKEOVER_ANNOTATION, "true", taken, args.timeout)
    print(f"took over {ref}: {_ready_text(result)}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    prompt = str(_dig(obj, "spec", "prompt"))
    source = args.from_version if args.from_version is not None else _dig(obj, "status", "resolvedVersion")
    if source is None:
        raise CliError(
            f"PromptAlias {namespace}/{args.name} has no resolved version yet",
            "pass --from N, or wait until it is Ready",
        )
    config = _registry_for_alias(cluster, obj, args.registry_uri, args.timeout)

    async def fetch(registry: MlflowRegistry) -> tuple[PromptVersion, PromptVersion]:
        old = await registry.get_version(prompt, int(source))
        new = await registry.get_version(prompt, args.to)
        return old, new

    old, new = _run_registry(config, fetch)
    resolved = " (resolved)" if args.from_version is None else ""
    text = unified_diff(
        f"prompts:/{prompt}/{old.version}{resolved}",
        template_lines(old.template, old.response_format, old.model_config),
        f"prompts:/{prompt}/{new.version}",
        template_lines(new.template, new.response_format, new.model_config),
    )
    if not text:
        print(f"no differences between versions {old.version} and {new.version} of {prompt}", file=sys.stderr)
        return EXIT_OK
    print(text, end="")
    return EXIT_PENDING


def cmd_versions(args: argparse.Namespace, cluster_factory: Callable[[], _Cluster]) -> int:
    if args.registry_uri:
        config = registry_config(args.registry_uri, os.environ, timeout_s=args.timeout)
    elif args.registry:
        cluster = cluster_factory()
        try:
            kind, _, name = args.registry.rpartition("/")
            kind = "ClusterPromptRegistry" if kind.lower() in {"clusterpromptregistry", "cpr"} else ""
            registry = cluster.get_registry(kind or "PromptRegistry", _namespace(args, cluster), name)
        finally:
            cluster.close()
        spec = registry.get("spec") or {}
        config = registry_config(
            str(spec.get("trackingUri") or ""),
            os.environ,
            workspace=spec.get("workspace"),
            insecure_skip_verify=bool(_dig(spec, "tls", "insecureSkipVerify")),
            timeout_s=args.timeout,
        )
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        config = registry_config(os.environ["MLFLOW_TRACKING_URI"], os.environ, timeout_s=args.timeout)
    else:
        raise CliError(
            "no MLflow server given",
            "pass --registry-uri URL, --registry NAME (a PromptRegistry in -n NAMESPACE), "
            "or set MLFLOW_TRACKING_URI",
        )

    async def fetch(registry: MlflowRegistry) -> tuple[PromptState, list[PromptVersion]]:
        state = await registry.get_prompt(args.prompt)
        return state, await registry.list_versions(args.prompt)

    state, versions = _run_registry(config, fetch)
    if args.output in ("json", "yaml"):
        by_version = aliases_by_version(state.aliases)
        data = {
            "prompt": state.name,
            "aliases": {
                alias: {"version": version, "managedBy": owner_text(state.tags.get(OWNER_TAG_PREFIX + alias))}
                for alias, version in sorted(state.aliases.items())
            },
            "versions": [
                {
                    "version": v.version,
                    "created": v.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "aliases": by_version.get(v.version, []),
                    "tags": dict(sorted(user_tags(v.tags).items())),
                    "message": v.commit_message,
                }
                for v in sorted(versions, key=lambda v: v.version, reverse=True)
            ],
        }
        _output(data, args.output)
        return EXIT_OK
    print(versions_table(versions, state.aliases, state.tags), end="")
    return EXIT_OK


# ---- argument parsing -----------------------------------------------------------------------------


def _positive_version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("versions start at 1")
    return value


def _seconds(text: str) -> float:
    from promptalias.api.duration import parse_duration

    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 60s, 2m)") from None


def _cluster_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    common.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    common.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
    return common


def _wait_options() -> argparse.ArgumentParser:
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_WAIT_S, help="how long to wait for the operator (60s)"
    )
    waiting.add_argument("--no-wait", action="store_true", help="return once the request is made")
    return waiting


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register get, history, rollback, takeover, diff and versions."""
    common = _cluster_options()
    waiting = _wait_options()
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")

    get = subparsers.add_parser("get", parents=[common, output], help="list PromptAliases")
    get.add_argument("name", nargs="?", help="one PromptAlias (default: all in the namespace)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    get.set_defaults(func=_entry(cmd_get))

    history = subparsers.add_parser(
        "history", parents=[common, output], help="show the audit trail (status.history) of a PromptAlias"
    )
    history.add_argument("name")
    history.set_defaults(func=_entry(cmd_history))

    rollback = subparsers.add_parser(
        "rollback",
        parents=[common, waiting],
        help="return an alias to its previous version (or --to N)",
        description=(
            "Pinned (spec.version set): patch spec.version, unless Argo CD or Flux applies the object "
            "(then print the Git change and exit 3; --force patches anyway). Follow mode: ask the "
            "operator to move the MLflow alias back (annotation promptalias.io/rollback-to) and wait."
        ),
    )
    rollback.add_argument("name")
    rollback.add_argument("--to", type=_positive_version, default=None, help="version (default: previous)")
    rollback.add_argument("--force", action="store_true", help="patch even when a GitOps tool manages it")
    rollback.set_defaults(func=_entry(cmd_rollback))

    takeover = subparsers.add_parser(
        "takeover",
        parents=[common, waiting],
        help="claim an alias another cluster or resource owns (audited)",
    )
    takeover.add_argument("name")
    takeover.set_defaults(func=_entry(cmd_takeover))

    diff = subparsers.add_parser(
        "diff",
        parents=[common],
        help="unified diff of the templates of the resolved version and --to N",
        description="Exit status: 0 no differences, 1 differences, 2 error (as kubectl diff).",
    )
    diff.add_argument("name")
    diff.add_argument("--to", type=_positive_version, required=True, help="the version to compare with")
    diff.add_argument(
        "--from", dest="from_version", type=_positive_version, default=None, help="default: resolved"
    )
    diff.add_argument("--registry-uri", default=None, help="MLflow URL (default: the registry's trackingUri)")
    diff.add_argument("--timeout", type=_seconds, default=10.0, help="MLflow request timeout (10s)")
    diff.set_defaults(func=_entry(cmd_diff))

    versions = subparsers.add_parser(
        "versions",
        parents=[common, output],
        help="list a prompt's versions, their tags and the aliases on them",
    )
    versions.add_argument("prompt")
    versions.add_argument("--registry-uri", default=None, help="MLflow URL (default: $MLFLOW_TRACKING_URI)")
    versions.add_argument(
        "--registry",
        default=None,
        metavar="[clusterpromptregistry/]NAME",
        help="read the URL from this PromptRegistry (in -n) or ClusterPromptRegistry",
    )
    versions.add_argument("--timeout", type=_seconds, default=10.0, help="MLflow request timeout (10s)")
    versions.set_defaults(func=_versions_entry)


def _report(run: Callable[[], int]) -> int:
    """Run a command; print failures as `error: …; what to do` (no traceback unless asked)."""
    try:
        return run()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the promise is "no tracebacks"; PROMPTALIAS_DEBUG=1 shows them
        if os.environ.get("PROMPTALIAS_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}; "
            "run again with PROMPTALIAS_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _entry(command: Callable[[argparse.Namespace, _Cluster], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        def body() -> int:
            cluster = _Cluster(args.kubeconfig, args.context)
            try:
                return command(args, cluster)
            finally:
                cluster.close()

        return _report(body)

    return run


def _versions_entry(args: argparse.Namespace) -> int:
    return _report(lambda: cmd_versions(args, lambda: _Cluster(args.kubeconfig, args.context)))

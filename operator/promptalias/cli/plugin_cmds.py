"""`promptalias get|history|rollback|takeover|diff|versions`, also run as `kubectl promptalias ...`.

The binary is installed as both `promptalias` and `kubectl-promptalias`, so kubectl finds it as a
plugin and passes the arguments through untouched. This module holds the commands and their
arguments; what they print is in `formatting`, the cluster behind the `Cluster` Protocol in
`cluster`, the waits for the operator in `waiting`, the user's MLflow access in `registry_access`,
exit codes and error printing in `errors` (docs/cli.md). Heavy modules (kubernetes; aiohttp through
promptalias.registry) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from promptalias.cli.cluster import Cluster
from promptalias.cli.errors import EXIT_GITOPS, EXIT_OK, EXIT_PENDING, CliError, report
from promptalias.cli.formatting import (
    alias_table,
    cell,
    dig,
    find_condition,
    git_change,
    history_table,
    output,
    ready_text,
    template_lines,
    unified_diff,
    versions_document,
    versions_table,
)
from promptalias.cli.options import (
    add_command,
    cluster_options,
    connect_to,
    mlflow_options,
    namespace_of,
    output_options,
    positive_version,
    wait_options,
)
from promptalias.cli.registry_access import (
    config_from_registry,
    registry_config,
    registry_of_alias,
    run_registry,
)
from promptalias.cli.waiting import annotations_of, request, wait_until
from promptalias.reconcile.gitops import detect_gitops
from promptalias.vocabulary import ROLLBACK_ANNOTATION, TAKEOVER_ANNOTATION

if TYPE_CHECKING:
    from promptalias.registry import MlflowRegistry, PromptState, PromptVersion


# ---- commands -------------------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace, cluster: Cluster) -> int:
    if args.name and args.all_namespaces:
        raise CliError("a NAME cannot be combined with --all-namespaces", "give -n NAMESPACE instead")
    namespace = None if args.all_namespaces else namespace_of(args, cluster)
    if args.name:
        assert namespace is not None
        items = [cluster.get_alias(namespace, args.name)]
    else:
        items = cluster.list_aliases(namespace)
    if args.output in ("json", "yaml"):
        data: Any = items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items}
        output(data, args.output)
        return EXIT_OK
    if not items:
        where = f"in {namespace} namespace" if namespace else "in any namespace"
        print(f"No PromptAliases found {where}.", file=sys.stderr)
        return EXIT_OK
    print(alias_table(items, datetime.now(UTC), all_namespaces=args.all_namespaces), end="")
    return EXIT_OK


def cmd_history(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    history = list(dig(obj, "status", "history") or [])
    if args.output in ("json", "yaml"):
        output(history, args.output)
        return EXIT_OK
    if not history:
        print(f"No history recorded yet for PromptAlias {namespace}/{args.name}.", file=sys.stderr)
        return EXIT_OK
    print(history_table(history), end="")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    ref = f"{namespace}/{args.name}"
    target = args.to if args.to is not None else dig(obj, "status", "previousVersion")
    if target is None:
        raise CliError(
            f"PromptAlias {ref} has no previous version recorded",
            f"name the version with --to N (see `promptalias history {args.name} -n {namespace}`)",
        )
    target = int(target)
    if dig(obj, "spec", "version") is None:
        return _rollback_follow(args, cluster, obj, target)
    return _rollback_pinned(args, cluster, obj, target)


def _uri(obj: Mapping[str, Any]) -> str:
    return f"prompts:/{dig(obj, 'spec', 'prompt')}@{dig(obj, 'spec', 'alias')}"


def _rollback_follow(args: argparse.Namespace, cluster: Cluster, obj: Mapping[str, Any], target: int) -> int:
    """Follow mode: MLflow owns the alias, so the rollback happens there; the operator does it
    (with its registry credentials) when asked through the one-shot annotation, and records it."""
    namespace, uri = str(dig(obj, "metadata", "namespace")), _uri(obj)
    current = dig(obj, "status", "resolvedVersion")
    if current == target:
        print(f"{uri} already points at version {target}; nothing to roll back")
        return EXIT_OK
    value = str(target)
    if args.no_wait:
        patch = {"metadata": {"annotations": {ROLLBACK_ANNOTATION: value}}}
        cluster.patch_alias(namespace, args.name, patch)
        print(f"requested rollback of {uri} to version {target} (the operator moves the MLflow alias)")
        return EXIT_OK
    print(f"requested rollback of {uri} to version {target} (the operator moves the MLflow alias)")
    request(
        cluster,
        obj,
        ROLLBACK_ANNOTATION,
        value,
        lambda o: dig(o, "status", "resolvedVersion") == target,
        args.timeout,
    )
    print(f"rolled back {uri}: version {cell(current)} → {target} (MLflow alias moved; history: Rollback)")
    return EXIT_OK


def _rollback_pinned(args: argparse.Namespace, cluster: Cluster, obj: Mapping[str, Any], target: int) -> int:
    """Pinned mode: Git owns the alias through spec.version, so the rollback is a spec change —
    unless a GitOps tool applies the object, which would revert a live patch."""
    namespace, uri = str(dig(obj, "metadata", "namespace")), _uri(obj)
    desired = int(dig(obj, "spec", "version"))
    if desired == target:
        print(f"spec.version of {namespace}/{args.name} is already {target}; nothing to roll back")
        return EXIT_OK
    owner = detect_gitops(dig(obj, "metadata") or {})
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
    generation = int(dig(patched, "metadata", "generation") or 0)
    print(f"patched {namespace}/{args.name}: spec.version {desired} → {target}")
    if args.no_wait:
        return EXIT_OK

    def done(o: Mapping[str, Any]) -> bool:
        ready = find_condition(o, "Ready")
        return (
            int(dig(o, "status", "observedGeneration") or 0) >= generation
            and dig(o, "status", "resolvedVersion") == target
            and ready is not None
            and ready.get("status") == "True"
        )

    def refused(o: Mapping[str, Any]) -> str | None:
        stalled = find_condition(o, "Stalled")
        if (
            stalled is not None
            and stalled.get("status") == "True"
            and int(stalled.get("observedGeneration") or 0) >= generation
        ):
            return f"the operator cannot apply version {target}: {stalled.get('message')}"
        return None

    wait_until(
        lambda: cluster.get_alias(namespace, args.name),
        done,
        args.timeout,
        refused=refused,
        waiting_on=ready_text,
        remedy="check that the operator runs",
    )
    print(f"rolled back {uri}: MLflow alias now points at version {target}")
    return EXIT_OK


def cmd_takeover(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    ref = f"{namespace}/{args.name}"
    if dig(obj, "spec", "version") is None:
        raise CliError(
            f"PromptAlias {ref} follows MLflow (no spec.version): it never writes the alias, so it "
            "needs no ownership",
            "set spec.version to manage the alias, then take it over",
        )
    ready = find_condition(obj, "Ready") or {}
    if ready.get("reason") != "OwnedElsewhere" and TAKEOVER_ANNOTATION not in annotations_of(obj):
        print(f"{ref} is not blocked by another owner ({ready_text(obj)}); nothing to take over")
        return EXIT_OK
    previous_owner = dig(obj, "status", "owner")
    print(f"requested takeover of {ref}" + (f" from {previous_owner}" if previous_owner else ""))
    if args.no_wait:
        cluster.patch_alias(
            namespace, args.name, {"metadata": {"annotations": {TAKEOVER_ANNOTATION: "true"}}}
        )
        return EXIT_OK

    def taken(o: Mapping[str, Any]) -> bool:
        ready = find_condition(o, "Ready") or {}
        return ready.get("status") == "True"

    result = request(cluster, obj, TAKEOVER_ANNOTATION, "true", taken, args.timeout)
    print(f"took over {ref}: {ready_text(result)}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    obj = cluster.get_alias(namespace, args.name)
    prompt = str(dig(obj, "spec", "prompt"))
    source = args.from_version if args.from_version is not None else dig(obj, "status", "resolvedVersion")
    if source is None:
        raise CliError(
            f"PromptAlias {namespace}/{args.name} has no resolved version yet",
            "pass --from N, or wait until it is Ready",
        )
    config = config_from_registry(
        registry_of_alias(cluster, obj), os.environ, args.registry_uri, args.timeout
    )

    async def fetch(registry: MlflowRegistry) -> tuple[PromptVersion, PromptVersion]:
        old = await registry.get_version(prompt, int(source))
        new = await registry.get_version(prompt, args.to)
        return old, new

    old, new = run_registry(config, fetch)
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


def cmd_versions(args: argparse.Namespace, cluster_factory: Callable[[], Cluster]) -> int:
    if args.registry_uri:
        config = registry_config(args.registry_uri, os.environ, timeout_s=args.timeout)
    elif args.registry:
        cluster = cluster_factory()
        try:
            kind, _, name = args.registry.rpartition("/")
            kind = "ClusterPromptRegistry" if kind.lower() in {"clusterpromptregistry", "cpr"} else ""
            registry = cluster.get_registry(kind or "PromptRegistry", namespace_of(args, cluster), name)
        finally:
            cluster.close()
        config = config_from_registry(registry, os.environ, None, args.timeout)
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

    state, versions = run_registry(config, fetch)
    if args.output in ("json", "yaml"):
        output(versions_document(state.name, versions, state.aliases, state.tags), args.output)
        return EXIT_OK
    print(versions_table(versions, state.aliases, state.tags), end="")
    return EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register get, history, rollback, takeover, diff and versions."""
    common = cluster_options()
    waiting = wait_options()
    output = output_options()

    get = add_command(
        subparsers, "get", cmd_get, parents=[common, output], help="list PromptAliases", target=None
    )
    get.add_argument("name", nargs="?", help="one PromptAlias (default: all in the namespace)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")

    add_command(
        subparsers,
        "history",
        cmd_history,
        parents=[common, output],
        help="show the audit trail (status.history) of a PromptAlias",
    )

    rollback = add_command(
        subparsers,
        "rollback",
        cmd_rollback,
        parents=[common, waiting],
        help="return an alias to its previous version (or --to N)",
        description=(
            "Pinned (spec.version set): patch spec.version, unless Argo CD or Flux applies the object "
            "(then print the Git change and exit 3; --force patches anyway). Follow mode: ask the "
            "operator to move the MLflow alias back (annotation promptalias.io/rollback-to) and wait."
        ),
    )
    rollback.add_argument("--to", type=positive_version, default=None, help="version (default: previous)")
    rollback.add_argument("--force", action="store_true", help="patch even when a GitOps tool manages it")

    add_command(
        subparsers,
        "takeover",
        cmd_takeover,
        parents=[common, waiting],
        help="claim an alias another cluster or resource owns (audited)",
    )

    diff = add_command(
        subparsers,
        "diff",
        cmd_diff,
        parents=[common, mlflow_options("the registry's trackingUri")],
        help="unified diff of the templates of the resolved version and --to N",
        description="Exit status: 0 no differences, 1 differences, 2 error (as kubectl diff).",
    )
    diff.add_argument("--to", type=positive_version, required=True, help="the version to compare with")
    diff.add_argument(
        "--from", dest="from_version", type=positive_version, default=None, help="default: resolved"
    )

    versions = subparsers.add_parser(
        "versions",
        parents=[common, output, mlflow_options("$MLFLOW_TRACKING_URI")],
        help="list a prompt's versions, their tags and the aliases on them",
    )
    versions.add_argument("prompt")
    versions.add_argument(
        "--registry",
        default=None,
        metavar="[clusterpromptregistry/]NAME",
        help="read the URL from this PromptRegistry (in -n) or ClusterPromptRegistry",
    )
    versions.set_defaults(func=_versions_entry)


def _versions_entry(args: argparse.Namespace) -> int:
    return report(lambda: cmd_versions(args, lambda: connect_to(args)))

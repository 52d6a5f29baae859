"""`promptalias experiment status|promote|abort|resume|analyse NAME [-n NS]` (also kubectl promptalias).

promote, abort and resume are requests the operator carries out: the command sets an annotation on
the PromptExperiment (`promptalias.io/promote`, `/abort`, `/resume`), the controller acts and removes
it once done, and the command waits for the resulting phase. Requests rather than spec patches, so
a PromptExperiment kept in Git shows no diff, and the status history records who asked (the field
manager of the annotation). When the baseline PromptAlias is applied from Git (Argo CD, Flux),
promote also prints the Git change to make and exits 3: the operator keeps the split until Git moves
the baseline, then marks the experiment Promoted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from promptalias.cli.plugin_cmds import (
    EXIT_GITOPS,
    EXIT_OK,
    EXIT_PENDING,
    FIELD_MANAGER,
    GROUP,
    VERSION,
    CliError,
    _Cluster,
    _cluster_options,
    _dig,
    _entry,
    _output,
    _wait_options,
    age,
    detect_gitops,
    find_condition,
    git_change,
    parse_time,
    render_table,
)

PLURAL: Final = "promptexperiments"
# The annotations handlers/experiments.py consumes (strings repeated: the CLI must not import kopf).
PROMOTE: Final = "promptalias.io/promote"
ABORT: Final = "promptalias.io/abort"
RESUME: Final = "promptalias.io/resume"
HISTORY_HEADERS: Final = ("TIME", "REASON", "PHASE", "WEIGHT", "STEP", "ACTOR", "MESSAGE")
ANALYSIS_HEADERS: Final = (
    "METRIC",
    "ROLE",
    "BASELINE",
    "CANDIDATE",
    "EFFECT",
    "CONFIDENCE SEQ.",
    "P",
    "VERDICT",
)
LIST_HEADERS: Final = ("NAME", "BASELINE", "CANDIDATE", "PHASE", "WEIGHT", "STEP", "READY", "AGE")
_STALLED: Final = frozenset(
    {
        "VersionNotFound",
        "Conflict",
        "OwnedElsewhere",
        "InvalidRegistry",
        "BaselineNotFound",
        "InvalidCandidate",
    }
)


# ---- pure helpers ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "<none>" if value is None or value == "" else str(value)


def step_text(obj: Mapping[str, Any]) -> str:
    step = _dig(obj, "status", "currentStep")
    steps = _dig(obj, "spec", "steps") or []
    if step is None or not steps:
        return "-"
    return f"{int(step) + 1}/{len(steps)}"


def next_step_in(obj: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds until the operator takes the next step, or None (no timer running)."""
    if _dig(obj, "status", "phase") != "Progressing":
        return None
    step = _dig(obj, "status", "currentStep")
    steps = _dig(obj, "spec", "steps") or []
    if step is None or step >= len(steps) or not steps[step].get("pause"):
        return None
    from promptalias.api.duration import parse_duration

    started: datetime | None = None
    for entry in reversed(_dig(obj, "status", "history") or []):
        reason = entry.get("reason")
        if (reason in ("Started", "StepAdvanced") and entry.get("step") == step) or reason == "Resumed":
            started = parse_time(entry.get("time"))
            break
    if started is None:
        return None
    due = started.timestamp() + parse_duration(str(steps[step]["pause"]))
    return max(0.0, due - now.timestamp())


def experiment_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    ready = find_condition(obj, "Ready")
    weight = _dig(obj, "status", "currentWeight")
    return [
        _text(_dig(obj, "metadata", "name")),
        _text(_dig(obj, "spec", "baseline", "name")),
        f"{_dig(obj, 'spec', 'candidate', 'alias')} -> v{_dig(obj, 'spec', 'candidate', 'version')}",
        _text(_dig(obj, "status", "phase")),
        f"{weight}%" if weight is not None else "<none>",
        step_text(obj),
        _text(ready.get("status") if ready else None),
        age(_dig(obj, "metadata", "creationTimestamp"), now),
    ]


def history_rows(history: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            _text(entry.get("time")),
            _text(entry.get("reason")),
            _text(entry.get("phase")),
            f"{entry['weight']}%" if entry.get("weight") is not None else "-",
            str(int(entry["step"]) + 1) if entry.get("step") is not None else "-",
            _text(entry.get("actor")),
            _text(entry.get("message")),
        ]
        for entry in history
    ]
    return render_table(HISTORY_HEADERS, rows)


def _number(value: Any, effect_type: str | None = None) -> str:
    if value is None:
        return "-"
    number = float(value)
    if effect_type == "Relative":
        return f"{number * 100:+.1f}%"
    if effect_type == "Absolute":
        return f"{number:+.4g}"
    return f"{number:.4g}"


def _arm_text(arm: Mapping[str, Any] | None) -> str:
    if not arm:
        return "-"
    return f"v{_text(arm.get('version'))} {_number(arm.get('value'))} (n={arm.get('samples', 0)})"


def analysis_text(analysis: Mapping[str, Any]) -> str:
    """The analysis block of `status`: the decision, its reason and one row per metric."""
    decision = str(analysis.get("decision") or "-")
    if analysis.get("dryRun"):
        decision += " (dry run)"
    lines = [
        f"Analysis: {decision}, look {analysis.get('looks', 0)} at {_text(analysis.get('lastAnalysisTime'))}"
        f" (samples since {_text(analysis.get('windowStart'))}, weight {_text(analysis.get('weight'))}%)",
        f"  {analysis.get('reason') or ''}",
    ]
    ratio = analysis.get("sampleRatio")
    if ratio:
        lines.append(
            f"  Sample ratio: {ratio.get('baseline')} / {ratio.get('candidate')} "
            f"(candidate {_number(ratio.get('observedShare'))}, "
            f"expected {_number(ratio.get('expectedShare'))}, p={_number(ratio.get('pValue'))})"
        )
    rows = []
    for metric in analysis.get("metrics") or []:
        arms = {arm.get("arm"): arm for arm in metric.get("arms") or []}
        kind = metric.get("effectType")
        interval = (
            f"[{_number(metric.get('lower'), kind)}, {_number(metric.get('upper'), kind)}]"
            if metric.get("lower") is not None
            else "-"
        )
        rows.append(
            [
                _text(metric.get("name")),
                _text(metric.get("role")),
                _arm_text(arms.get("baseline")),
                _arm_text(arms.get("candidate")),
                _number(metric.get("effect"), kind),
                interval,
                _number(metric.get("pValue")),
                _text(metric.get("verdict")),
            ]
        )
    text = "\n".join(lines) + "\n"
    if rows:
        text += render_table(ANALYSIS_HEADERS, rows)
    return text


def describe(obj: Mapping[str, Any], baseline: Mapping[str, Any] | None, now: datetime) -> str:
    """The `status` report of one experiment."""
    name = f"{_dig(obj, 'metadata', 'namespace')}/{_dig(obj, 'metadata', 'name')}"
    base_name = _dig(obj, "spec", "baseline", "name")
    if baseline is not None:
        desired = _dig(baseline, "spec", "version")
        resolved = _dig(baseline, "status", "resolvedVersion")
        base = (
            f"{base_name} ({_dig(baseline, 'spec', 'prompt')}@{_dig(baseline, 'spec', 'alias')}: "
            f"version {_text(resolved)}{'' if desired is not None else ', follows MLflow'})"
        )
    else:
        base = f"{base_name} (not found)"
    weight = _dig(obj, "status", "currentWeight")
    lines = [
        f"PromptExperiment {name}",
        f"  Baseline:    {base}",
        f"  Candidate:   {_dig(obj, 'spec', 'candidate', 'alias')} -> version "
        f"{_dig(obj, 'spec', 'candidate', 'version')}",
        f"  Routing key: {_dig(obj, 'spec', 'routingKey') or 'user'}",
        f"  Phase:       {_text(_dig(obj, 'status', 'phase'))}"
        + (" (spec.suspend)" if _dig(obj, "spec", "suspend") else ""),
        f"  Weight:      {f'{weight}%' if weight is not None else '<none>'} of traffic to the candidate "
        f"(final {_dig(obj, 'spec', 'weight')}%, step {step_text(obj)})",
    ]
    due = next_step_in(obj, now)
    if due is not None:
        lines.append(f"  Next step:   in {due:.0f}s")
    elif _dig(obj, "status", "phase") == "Paused" and not _dig(obj, "spec", "suspend"):
        lines.append("  Next step:   waiting for `promptalias experiment resume`")
    pending = [key for key in (PROMOTE, ABORT, RESUME) if key in (_dig(obj, "metadata", "annotations") or {})]
    if pending:
        lines.append(f"  Requests:    {', '.join(pending)} (not yet handled)")
    for kind in ("Ready", "Reconciling", "Stalled"):
        cond = find_condition(obj, kind)
        if cond is not None:
            lines.append(
                f"  {kind + ':':<12} {cond.get('status')} {cond.get('reason')}: {cond.get('message')}"
            )
    history = _dig(obj, "status", "history") or []
    text = "\n".join(lines) + "\n"
    analysis = _dig(obj, "status", "analysis")
    if analysis:
        text += "\n" + analysis_text(analysis)
    if history:
        text += "\nHistory:\n" + history_rows(history)
    return text


# ---- commands ------------------------------------------------------------------------------------


def _get(cluster: _Cluster, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = cluster._call(
        f"PromptExperiment {name!r} in namespace {namespace!r}",
        cluster.custom.get_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
    )
    return got


def _annotate(cluster: _Cluster, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
    cluster._call(
        f"annotate PromptExperiment {name!r} in namespace {namespace!r}",
        cluster.custom.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"metadata": {"annotations": dict(annotations)}},
        field_manager=FIELD_MANAGER,
        _content_type="application/merge-patch+json",
    )


def _baseline(cluster: _Cluster, namespace: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    name = _dig(obj, "spec", "baseline", "name")
    try:
        return cluster.get_alias(namespace, str(name))
    except CliError:
        return None


def _namespace(args: argparse.Namespace, cluster: _Cluster) -> str:
    return str(args.namespace or cluster.default_namespace)


def _stamp() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _wait_for(
    cluster: _Cluster,
    namespace: str,
    name: str,
    done: Callable[[Mapping[str, Any]], bool],
    timeout_s: float,
    since: datetime,
) -> Mapping[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        obj = _get(cluster, namespace, name)
        if done(obj):
            return obj
        stalled = find_condition(obj, "Stalled")
        if stalled is not None and stalled.get("status") == "True" and stalled.get("reason") in _STALLED:
            changed = parse_time(stalled.get("lastTransitionTime"))
            if changed is not None and changed >= since.replace(microsecond=0):
                raise CliError(
                    f"the operator refused: {stalled.get('reason')}: {stalled.get('message')}",
                    "fix the cause and try again",
                    code=EXIT_PENDING,
                )
        if time.monotonic() >= deadline:
            ready = find_condition(obj, "Ready") or {}
            raise CliError(
                f"the operator did not finish within {timeout_s:g}s (phase {_dig(obj, 'status', 'phase')}, "
                f"{ready.get('reason')}: {ready.get('message')})",
                "check that the operator runs (`kubectl get pods`) and look at "
                f"`promptalias experiment status {name}`",
                code=EXIT_PENDING,
            )
        time.sleep(0.2)


def cmd_status(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    now = datetime.now(UTC)
    if not args.name:
        got = cluster._call(
            f"list PromptExperiments in namespace {namespace!r}",
            cluster.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
        )
        items = got.get("items", [])
        if args.output != "table":
            _output({"apiVersion": "v1", "kind": "List", "items": items}, args.output)
        elif not items:
            print(f"No PromptExperiments found in {namespace} namespace.", file=sys.stderr)
        else:
            print(render_table(LIST_HEADERS, [experiment_row(item, now) for item in items]), end="")
        return EXIT_OK
    obj = _get(cluster, namespace, args.name)
    if args.output != "table":
        _output(obj, args.output)
        return EXIT_OK
    print(describe(obj, _baseline(cluster, namespace, obj), now), end="")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    obj = _get(cluster, namespace, args.name)
    phase = _dig(obj, "status", "phase")
    version = int(_dig(obj, "spec", "candidate", "version"))
    if phase == "Promoted":
        print(f"PromptExperiment {namespace}/{args.name} is already promoted (version {version}).")
        return EXIT_OK
    if phase == "Aborted":
        raise CliError(
            f"PromptExperiment {namespace}/{args.name} was aborted; a promotion no longer applies",
            f"create a new experiment, or set spec.version: {version} on the baseline PromptAlias",
        )
    baseline = _baseline(cluster, namespace, obj)
    if baseline is None:
        raise CliError(
            f"the baseline PromptAlias {_dig(obj, 'spec', 'baseline', 'name')!r} of {args.name} "
            "does not exist",
            "create it or fix spec.baseline.name",
        )
    since = datetime.now(UTC)
    _annotate(cluster, namespace, args.name, {PROMOTE: _stamp()})
    owner = detect_gitops(baseline.get("metadata") or {})
    if owner is not None:
        print(git_change(baseline, version, owner), end="")
        print(
            f"# The experiment keeps its split and becomes Promoted once {owner} moves the baseline.",
            file=sys.stderr,
        )
        return EXIT_GITOPS
    if args.no_wait:
        print(f"promotion of version {version} requested for PromptExperiment {namespace}/{args.name}")
        return EXIT_OK
    _wait_for(
        cluster, namespace, args.name, lambda o: _dig(o, "status", "phase") == "Promoted", args.timeout, since
    )
    alias, pa = _dig(baseline, "spec", "alias"), _dig(baseline, "metadata", "name")
    print(f"promoted: {alias} of PromptAlias {pa} now points at version {version}")
    return EXIT_OK


def cmd_abort(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    obj = _get(cluster, namespace, args.name)
    phase = _dig(obj, "status", "phase")
    if phase in ("Aborted", "Promoted"):
        print(f"PromptExperiment {namespace}/{args.name} is already {phase.lower()}.")
        return EXIT_OK
    since = datetime.now(UTC)
    _annotate(cluster, namespace, args.name, {ABORT: _stamp()})
    if args.no_wait:
        print(f"abort requested for PromptExperiment {namespace}/{args.name}")
        return EXIT_OK
    _wait_for(
        cluster, namespace, args.name, lambda o: _dig(o, "status", "phase") == "Aborted", args.timeout, since
    )
    print(f"aborted: the candidate of {namespace}/{args.name} receives no traffic")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, cluster: _Cluster) -> int:
    namespace = _namespace(args, cluster)
    obj = _get(cluster, namespace, args.name)
    if _dig(obj, "spec", "suspend"):
        raise CliError(
            f"PromptExperiment {namespace}/{args.name} has spec.suspend: true",
            "set spec.suspend: false (in Git, if it is kept there) to resume it",
        )
    if _dig(obj, "status", "phase") != "Paused":
        print(f"PromptExperiment {namespace}/{args.name} is not paused ({_dig(obj, 'status', 'phase')}).")
        return EXIT_OK
    step = _dig(obj, "status", "currentStep")
    since = datetime.now(UTC)
    # The step index makes the request idempotent: a repeat never skips a second step.
    _annotate(cluster, namespace, args.name, {RESUME: str(step if step is not None else "")})
    if args.no_wait:
        print(f"resume requested for PromptExperiment {namespace}/{args.name}")
        return EXIT_OK

    def moved(o: Mapping[str, Any]) -> bool:
        return bool(_dig(o, "status", "currentStep") != step or _dig(o, "status", "phase") != "Paused")

    after = _wait_for(cluster, namespace, args.name, moved, args.timeout, since)
    print(
        f"resumed: phase {_dig(after, 'status', 'phase')}, candidate weight "
        f"{_dig(after, 'status', 'currentWeight')}% (step {step_text(after)})"
    )
    return EXIT_OK


def cmd_analyse(args: argparse.Namespace, cluster: _Cluster) -> int:
    """One analysis now, from this machine, printed; never acts (the operator does)."""
    if not args.dry_run:
        raise CliError(
            "the operator acts on its own analysis every spec.analysis.interval; this command only shows "
            "what it would decide now",
            f"run `promptalias experiment analyse {args.name} --dry-run`",
        )
    import asyncio

    from promptalias.api.experiment import PromptExperiment
    from promptalias.cli.plugin_cmds import _registry_for_alias, _with_registry
    from promptalias.reconcile.analysis import Context, decide, experiment_started, split_count, split_start
    from promptalias.reconcile.experiment import Baseline
    from promptalias.registry import RegistryError
    from promptalias.sources.observe import observe

    namespace = _namespace(args, cluster)
    obj = _get(cluster, namespace, args.name)
    exp = PromptExperiment.from_body(obj)
    analysis = exp.spec.analysis
    if analysis is None:
        raise CliError(f"PromptExperiment {args.name} has no spec.analysis", "add one (docs/experiments.md)")
    base_obj = _baseline(cluster, namespace, obj)
    if base_obj is None:
        raise CliError(f"the baseline PromptAlias {exp.spec.baseline.name} was not found", "create it")
    baseline = Baseline(
        namespace=namespace,
        name=exp.spec.baseline.name,
        prompt=str(_dig(base_obj, "spec", "prompt")),
        alias=str(_dig(base_obj, "spec", "alias")),
        version=_dig(base_obj, "spec", "version"),
        resolved_version=_dig(base_obj, "status", "resolvedVersion"),
    )
    now = datetime.now(UTC)
    history = exp.status.history
    ctx = Context(
        now=now,
        started=experiment_started(history, now),
        window_start=split_start(history, now),
        weight=exp.status.current_weight or 0,
        splits=split_count(len(exp.spec.steps)) if exp.spec.steps else 1,
        baseline_version=baseline.resolved_version,
        candidate_version=exp.spec.candidate.version,
        looks=exp.status.analysis.looks if exp.status.analysis else 0,
    )
    config = _registry_for_alias(cluster, base_obj, args.registry_uri, args.timeout)
    try:
        observed = asyncio.run(
            _with_registry(
                config,
                lambda registry: observe(analysis.metrics, ctx, baseline, exp.spec.candidate.alias, registry),
            )
        )
    except RegistryError as exc:
        raise CliError(f"MLflow: {exc}", "check the registry and your MLFLOW_TRACKING_* settings") from None
    result = decide(analysis.model_copy(update={"dry_run": True}), observed, ctx)
    if args.output != "table":
        _output(result.status.to_dict(), args.output)
    else:
        print(analysis_text(result.status.to_dict()), end="")
    return EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `experiment status|promote|abort|resume`."""
    common = _cluster_options()
    waiting = _wait_options()
    parser = subparsers.add_parser(
        "experiment",
        help="show, promote, abort or resume a PromptExperiment (A/B split)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", parents=[common], help="phase, weight, conditions and history")
    status.add_argument("name", nargs="?", help="one experiment (default: list the namespace's)")
    status.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    status.set_defaults(func=_entry(cmd_status))
    promote = actions.add_parser(
        "promote",
        parents=[common, waiting],
        help="move the baseline alias to the candidate version (through the baseline's spec)",
    )
    promote.add_argument("name")
    promote.set_defaults(func=_entry(cmd_promote))
    abort = actions.add_parser(
        "abort", parents=[common, waiting], help="set the candidate weight to 0, for good"
    )
    abort.add_argument("name")
    abort.set_defaults(func=_entry(cmd_abort))
    resume = actions.add_parser(
        "resume", parents=[common, waiting], help="leave a step that has no pause duration"
    )
    resume.add_argument("name")
    resume.set_defaults(func=_entry(cmd_resume))
    analyse = actions.add_parser(
        "analyse",
        parents=[common],
        help="run one analysis of spec.analysis now and print it (--dry-run: nothing moves)",
    )
    analyse.add_argument("name")
    analyse.add_argument("--dry-run", action="store_true", help="required: the CLI never acts")
    analyse.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    analyse.add_argument("--registry-uri", help="MLflow URI to use instead of the registry's trackingUri")
    analyse.add_argument("--timeout", type=float, default=10.0, help="seconds per MLflow request")
    analyse.set_defaults(func=_entry(cmd_analyse))

"""`promptalias experiment status|promote|abort|resume|analyse NAME [-n NS]` (also kubectl promptalias).

promote, abort and resume are requests the operator carries out: the command sets an annotation on
the PromptExperiment (`promptalias.io/promote`, `/abort`, `/resume`), the controller acts and removes
it once done, and the command waits for the resulting phase. Requests rather than spec patches, so
a PromptExperiment kept in Git shows no diff, and the status history records who asked (the field
manager of the annotation). When the baseline PromptAlias is applied from Git (Argo CD, Flux),
promote also prints the Git change to make and exits 3: the operator keeps the split until Git moves
the baseline, then marks the experiment Promoted.

Over 400 lines on purpose: five subcommands over one request-and-wait protocol (cli/waiting.py);
formatting lives in cli/formatting.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from promptalias.cli.cluster import Cluster
from promptalias.cli.errors import EXIT_GITOPS, EXIT_OK, CliError
from promptalias.cli.formatting import age, dig, find_condition, git_change, output, render_table
from promptalias.cli.options import cluster_options, namespace_of, wait_options, with_cluster
from promptalias.cli.waiting import wait_until
from promptalias.reconcile.gitops import detect_gitops
from promptalias.reconcile.timestamps import format_timestamp, parse_timestamp
from promptalias.vocabulary import ABORT_ANNOTATION, PROMOTE_ANNOTATION, RESUME_ANNOTATION

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
    step = dig(obj, "status", "currentStep")
    steps = dig(obj, "spec", "steps") or []
    if step is None or not steps:
        return "-"
    return f"{int(step) + 1}/{len(steps)}"


def next_step_in(obj: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds until the operator takes the next step, or None (no timer running)."""
    if dig(obj, "status", "phase") != "Progressing":
        return None
    step = dig(obj, "status", "currentStep")
    steps = dig(obj, "spec", "steps") or []
    if step is None or step >= len(steps) or not steps[step].get("pause"):
        return None
    from promptalias.api.duration import parse_duration

    started: datetime | None = None
    for entry in reversed(dig(obj, "status", "history") or []):
        reason = entry.get("reason")
        if (reason in ("Started", "StepAdvanced") and entry.get("step") == step) or reason == "Resumed":
            started = parse_timestamp(entry.get("time"))
            break
    if started is None:
        return None
    due = started.timestamp() + parse_duration(str(steps[step]["pause"]))
    return max(0.0, due - now.timestamp())


def experiment_row(obj: Mapping[str, Any], now: datetime) -> list[str]:
    ready = find_condition(obj, "Ready")
    weight = dig(obj, "status", "currentWeight")
    return [
        _text(dig(obj, "metadata", "name")),
        _text(dig(obj, "spec", "baseline", "name")),
        f"{dig(obj, 'spec', 'candidate', 'alias')} -> v{dig(obj, 'spec', 'candidate', 'version')}",
        _text(dig(obj, "status", "phase")),
        f"{weight}%" if weight is not None else "<none>",
        step_text(obj),
        _text(ready.get("status") if ready else None),
        age(dig(obj, "metadata", "creationTimestamp"), now),
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
    name = f"{dig(obj, 'metadata', 'namespace')}/{dig(obj, 'metadata', 'name')}"
    base_name = dig(obj, "spec", "baseline", "name")
    if baseline is not None:
        desired = dig(baseline, "spec", "version")
        resolved = dig(baseline, "status", "resolvedVersion")
        base = (
            f"{base_name} ({dig(baseline, 'spec', 'prompt')}@{dig(baseline, 'spec', 'alias')}: "
            f"version {_text(resolved)}{'' if desired is not None else ', follows MLflow'})"
        )
    else:
        base = f"{base_name} (not found)"
    weight = dig(obj, "status", "currentWeight")
    lines = [
        f"PromptExperiment {name}",
        f"  Baseline:    {base}",
        f"  Candidate:   {dig(obj, 'spec', 'candidate', 'alias')} -> version "
        f"{dig(obj, 'spec', 'candidate', 'version')}",
        f"  Routing key: {dig(obj, 'spec', 'routingKey') or 'user'}",
        f"  Phase:       {_text(dig(obj, 'status', 'phase'))}"
        + (" (spec.suspend)" if dig(obj, "spec", "suspend") else ""),
        f"  Weight:      {f'{weight}%' if weight is not None else '<none>'} of traffic to the candidate "
        f"(final {dig(obj, 'spec', 'weight')}%, step {step_text(obj)})",
    ]
    due = next_step_in(obj, now)
    if due is not None:
        lines.append(f"  Next step:   in {due:.0f}s")
    elif dig(obj, "status", "phase") == "Paused" and not dig(obj, "spec", "suspend"):
        lines.append("  Next step:   waiting for `promptalias experiment resume`")
    pending = [
        key
        for key in (PROMOTE_ANNOTATION, ABORT_ANNOTATION, RESUME_ANNOTATION)
        if key in (dig(obj, "metadata", "annotations") or {})
    ]
    if pending:
        lines.append(f"  Requests:    {', '.join(pending)} (not yet handled)")
    for kind in ("Ready", "Reconciling", "Stalled"):
        cond = find_condition(obj, kind)
        if cond is not None:
            lines.append(
                f"  {kind + ':':<12} {cond.get('status')} {cond.get('reason')}: {cond.get('message')}"
            )
    history = dig(obj, "status", "history") or []
    text = "\n".join(lines) + "\n"
    analysis = dig(obj, "status", "analysis")
    if analysis:
        text += "\n" + analysis_text(analysis)
    if history:
        text += "\nHistory:\n" + history_rows(history)
    return text


# ---- commands ------------------------------------------------------------------------------------


def _get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.get_experiment(namespace, name)


def _annotate(cluster: Cluster, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
    cluster.patch_experiment(namespace, name, {"metadata": {"annotations": dict(annotations)}})


def _baseline(cluster: Cluster, namespace: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    name = dig(obj, "spec", "baseline", "name")
    try:
        return cluster.get_alias(namespace, str(name))
    except CliError:
        return None


def _stamp() -> str:
    return format_timestamp(datetime.now(UTC))


def _wait_for(
    cluster: Cluster,
    namespace: str,
    name: str,
    done: Callable[[Mapping[str, Any]], bool],
    timeout_s: float,
    since: datetime,
) -> Mapping[str, Any]:
    def refused(obj: Mapping[str, Any]) -> str | None:
        stalled = find_condition(obj, "Stalled")
        if stalled is None or stalled.get("status") != "True" or stalled.get("reason") not in _STALLED:
            return None
        changed = parse_timestamp(stalled.get("lastTransitionTime"))
        if changed is None or changed < since.replace(microsecond=0):
            return None  # an old refusal, not an answer to this request
        return f"the operator refused: {stalled.get('reason')}: {stalled.get('message')}"

    def waiting_on(obj: Mapping[str, Any]) -> str:
        ready = find_condition(obj, "Ready") or {}
        return f"phase {dig(obj, 'status', 'phase')}, {ready.get('reason')}: {ready.get('message')}"

    return wait_until(
        lambda: _get(cluster, namespace, name),
        done,
        timeout_s,
        refused=refused,
        waiting_on=waiting_on,
        remedy="check that the operator runs (`kubectl get pods`) and look at "
        f"`promptalias experiment status {name}`",
    )


def cmd_status(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    now = datetime.now(UTC)
    if not args.name:
        items = cluster.list_experiments(namespace)
        if args.output != "table":
            output({"apiVersion": "v1", "kind": "List", "items": items}, args.output)
        elif not items:
            print(f"No PromptExperiments found in {namespace} namespace.", file=sys.stderr)
        else:
            print(render_table(LIST_HEADERS, [experiment_row(item, now) for item in items]), end="")
        return EXIT_OK
    obj = _get(cluster, namespace, args.name)
    if args.output != "table":
        output(obj, args.output)
        return EXIT_OK
    print(describe(obj, _baseline(cluster, namespace, obj), now), end="")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    obj = _get(cluster, namespace, args.name)
    phase = dig(obj, "status", "phase")
    version = int(dig(obj, "spec", "candidate", "version"))
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
            f"the baseline PromptAlias {dig(obj, 'spec', 'baseline', 'name')!r} of {args.name} "
            "does not exist",
            "create it or fix spec.baseline.name",
        )
    since = datetime.now(UTC)
    _annotate(cluster, namespace, args.name, {PROMOTE_ANNOTATION: _stamp()})
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
        cluster, namespace, args.name, lambda o: dig(o, "status", "phase") == "Promoted", args.timeout, since
    )
    alias, pa = dig(baseline, "spec", "alias"), dig(baseline, "metadata", "name")
    print(f"promoted: {alias} of PromptAlias {pa} now points at version {version}")
    return EXIT_OK


def cmd_abort(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    obj = _get(cluster, namespace, args.name)
    phase = dig(obj, "status", "phase")
    if phase in ("Aborted", "Promoted"):
        print(f"PromptExperiment {namespace}/{args.name} is already {phase.lower()}.")
        return EXIT_OK
    since = datetime.now(UTC)
    _annotate(cluster, namespace, args.name, {ABORT_ANNOTATION: _stamp()})
    if args.no_wait:
        print(f"abort requested for PromptExperiment {namespace}/{args.name}")
        return EXIT_OK
    _wait_for(
        cluster, namespace, args.name, lambda o: dig(o, "status", "phase") == "Aborted", args.timeout, since
    )
    print(f"aborted: the candidate of {namespace}/{args.name} receives no traffic")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, cluster: Cluster) -> int:
    namespace = namespace_of(args, cluster)
    obj = _get(cluster, namespace, args.name)
    if dig(obj, "spec", "suspend"):
        raise CliError(
            f"PromptExperiment {namespace}/{args.name} has spec.suspend: true",
            "set spec.suspend: false (in Git, if it is kept there) to resume it",
        )
    if dig(obj, "status", "phase") != "Paused":
        print(f"PromptExperiment {namespace}/{args.name} is not paused ({dig(obj, 'status', 'phase')}).")
        return EXIT_OK
    step = dig(obj, "status", "currentStep")
    since = datetime.now(UTC)
    # The step index makes the request idempotent: a repeat never skips a second step.
    _annotate(cluster, namespace, args.name, {RESUME_ANNOTATION: str(step if step is not None else "")})
    if args.no_wait:
        print(f"resume requested for PromptExperiment {namespace}/{args.name}")
        return EXIT_OK

    def moved(o: Mapping[str, Any]) -> bool:
        return bool(dig(o, "status", "currentStep") != step or dig(o, "status", "phase") != "Paused")

    after = _wait_for(cluster, namespace, args.name, moved, args.timeout, since)
    print(
        f"resumed: phase {dig(after, 'status', 'phase')}, candidate weight "
        f"{dig(after, 'status', 'currentWeight')}% (step {step_text(after)})"
    )
    return EXIT_OK


def cmd_analyse(args: argparse.Namespace, cluster: Cluster) -> int:
    """One analysis now, from this machine, printed; never acts (the operator does)."""
    if not args.dry_run:
        raise CliError(
            "the operator acts on its own analysis every spec.analysis.interval; this command only shows "
            "what it would decide now",
            f"run `promptalias experiment analyse {args.name} --dry-run`",
        )
    import os

    from promptalias.api.experiment import PromptExperiment
    from promptalias.cli.registry_access import config_from_registry, registry_of_alias, run_registry
    from promptalias.reconcile.analysis import Context, decide, experiment_started, split_count, split_start
    from promptalias.reconcile.experiment import Baseline
    from promptalias.sources.observe import observe

    namespace = namespace_of(args, cluster)
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
        prompt=str(dig(base_obj, "spec", "prompt")),
        alias=str(dig(base_obj, "spec", "alias")),
        version=dig(base_obj, "spec", "version"),
        resolved_version=dig(base_obj, "status", "resolvedVersion"),
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
    config = config_from_registry(
        registry_of_alias(cluster, base_obj), os.environ, args.registry_uri, args.timeout
    )
    observed = run_registry(
        config, lambda registry: observe(analysis.metrics, ctx, baseline, exp.spec.candidate.alias, registry)
    )
    result = decide(analysis.model_copy(update={"dry_run": True}), observed, ctx)
    if args.output != "table":
        output(result.status.to_dict(), args.output)
    else:
        print(analysis_text(result.status.to_dict()), end="")
    return EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `experiment status|promote|abort|resume`."""
    common = cluster_options()
    waiting = wait_options()
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
    status.set_defaults(func=with_cluster(cmd_status))
    promote = actions.add_parser(
        "promote",
        parents=[common, waiting],
        help="move the baseline alias to the candidate version (through the baseline's spec)",
    )
    promote.add_argument("name")
    promote.set_defaults(func=with_cluster(cmd_promote))
    abort = actions.add_parser(
        "abort", parents=[common, waiting], help="set the candidate weight to 0, for good"
    )
    abort.add_argument("name")
    abort.set_defaults(func=with_cluster(cmd_abort))
    resume = actions.add_parser(
        "resume", parents=[common, waiting], help="leave a step that has no pause duration"
    )
    resume.add_argument("name")
    resume.set_defaults(func=with_cluster(cmd_resume))
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
    analyse.set_defaults(func=with_cluster(cmd_analyse))

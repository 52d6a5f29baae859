"""The pure parts of `promptalias get|history|rollback|takeover|diff|versions` (no cluster, no MLflow)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptalias.cli import errors, plugin_cmds, registry_access, waiting
from promptalias.cli import formatting as fmt
from promptalias.cli.cluster import Cluster, api_error
from promptalias.cli.main import build_parser, main
from promptalias.reconcile.gitops import DECLARED, GitOpsOwner
from promptalias.registry import PromptVersion

NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)


def _alias(
    name: str,
    *,
    namespace: str = "billing",
    version: int | None = 3,
    resolved: int | None = 3,
    previous: int | None = 2,
    ready: tuple[str, str] | None = ("True", "Synced"),
    created: datetime = NOW - timedelta(minutes=5),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "registryRef": {"name": "mlflow"},
        "prompt": "invoice-parser",
        "alias": "production",
    }
    if version is not None:
        spec["version"] = version
    status: dict[str, Any] = {}
    if resolved is not None:
        status["resolvedVersion"] = resolved
    if previous is not None:
        status["previousVersion"] = previous
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready[0], "reason": ready[1], "message": "m"}]
    return {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 4,
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": status,
    }


# ---- ages and tables ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 25 * 60, "3h25m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (735 * 86400, "2y5d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: float, expected: str) -> None:
    assert fmt.human_duration(seconds) == expected


def test_age_of_missing_or_bad_timestamps() -> None:
    assert fmt.age(None, NOW) == "<unknown>"
    assert fmt.age("yesterday", NOW) == "<unknown>"
    assert fmt.age("2026-01-10T11:59:00Z", NOW) == "60s"


def test_render_table_aligns_columns_three_spaces_apart() -> None:
    text = fmt.render_table(["A", "LONGER"], [["xxxx", "1"], ["y", "22"]])
    assert text.splitlines() == ["A      LONGER", "xxxx   1", "y      22"]


def test_get_table_has_namespace_column_only_across_namespaces() -> None:
    items = [
        _alias("b-pinned"),
        _alias("a-follow", version=None, resolved=None, previous=None, ready=None),
    ]
    lines = fmt.alias_table(items, NOW, all_namespaces=False).splitlines()
    assert lines[0].split() == ["NAME", "PROMPT", "ALIAS", "DESIRED", "RESOLVED", "READY", "REASON", "AGE"]
    # sorted by name; a follow-mode resource says so, absent values read <none> / Unknown
    follow = ["a-follow", "invoice-parser", "production", "follow", "<none>", "Unknown", "<none>", "5m"]
    assert lines[1].split() == follow
    assert lines[2].split() == ["b-pinned", "invoice-parser", "production", "3", "3", "True", "Synced", "5m"]
    wide = fmt.alias_table(items, NOW, all_namespaces=True).splitlines()
    assert wide[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert wide[1].split()[:2] == ["billing", "a-follow"]


def test_history_table_shows_moves_oldest_first() -> None:
    history = [
        {
            "version": 1,
            "time": "2026-01-10T10:00:00Z",
            "reason": "Applied",
            "actor": "kubectl",
            "message": "set",
        },
        {
            "version": 2,
            "previousVersion": 1,
            "time": "2026-01-10T11:00:00Z",
            "reason": "Observed",
            "actor": "mlflow",
            "message": "alias moved\n in MLflow",
        },
        {"previousVersion": 2, "time": "2026-01-10T11:30:00Z", "reason": "Observed"},
    ]
    lines = fmt.history_table(history).splitlines()
    assert lines[0].split() == ["TIME", "REASON", "FROM→TO", "ACTOR", "MESSAGE"]
    assert lines[1].split() == ["2026-01-10T10:00:00Z", "Applied", "-→1", "kubectl", "set"]
    assert lines[2].split() == [
        "2026-01-10T11:00:00Z",
        "Observed",
        "1→2",
        "mlflow",
        "alias",
        "moved",
        "in",
        "MLflow",
    ]
    assert lines[3].split() == ["2026-01-10T11:30:00Z", "Observed", "2→-", "<none>"]


# ---- the Git change (the detection: test_gitops.py) ----------------------------------------------


def test_git_change_is_yaml_naming_the_object_and_the_new_version() -> None:
    obj = _alias("invoice-parser-production")
    owner = GitOpsOwner("Argo CD", "Application", "invoice", "argocd")
    text = fmt.git_change(obj, 2, owner)
    doc = yaml.safe_load(text)
    assert doc == {
        "apiVersion": "promptalias.io/v1alpha1",
        "kind": "PromptAlias",
        "metadata": {"name": "invoice-parser-production", "namespace": "billing"},
        "spec": {"version": 2},
    }
    assert "version: 2  # was 3" in text
    assert "Argo CD (Application argocd/invoice)" in text
    assert "argocd app sync argocd/invoice" in text


def test_git_change_for_flux() -> None:
    obj = _alias("x")
    kustomization = fmt.git_change(obj, 1, GitOpsOwner("Flux", "Kustomization", "apps", "flux-system"))
    assert "flux reconcile kustomization apps -n flux-system --with-source" in kustomization
    helm = fmt.git_change(obj, 1, GitOpsOwner("Flux", "HelmRelease", "invoice", "billing"))
    assert "values of HelmRelease billing/invoice" in helm
    assert yaml.safe_load(helm)["spec"] == {"version": 1}


# ---- templates and versions -----------------------------------------------------------------------


def test_template_diff_of_text_prompts() -> None:
    old = fmt.template_lines("Parse {{invoice}}.\nBe brief.")
    new = fmt.template_lines("Parse {{invoice}}.\nBe thorough.", {"type": "object"})
    diff = fmt.unified_diff("prompts:/p/3", old, "prompts:/p/4", new)
    assert diff.splitlines()[:2] == ["--- prompts:/p/3", "+++ prompts:/p/4"]
    assert "-Be brief.\n" in diff
    assert "+Be thorough.\n" in diff
    assert "+[response_format]\n" in diff
    assert fmt.unified_diff("a", old, "b", old) == ""


def test_template_lines_of_chat_prompts() -> None:
    lines = fmt.template_lines(
        [{"role": "system", "content": "You parse invoices."}, {"role": "user", "content": "{{text}}"}],
        model_config={"temperature": 0.1, "model": "m"},
    )
    assert lines == [
        "[system]\n",
        "You parse invoices.\n",
        "[user]\n",
        "{{text}}\n",
        "\n",
        "[model_config]\n",
        "{\n",
        '  "model": "m",\n',
        '  "temperature": 0.1\n',
        "}\n",
    ]


def _version(number: int, tags: dict[str, str] | None = None, message: str | None = None) -> PromptVersion:
    return PromptVersion(
        name="p",
        version=number,
        template="t",
        response_format=None,
        model_config=None,
        tags=tags or {},
        commit_message=message,
        creation_timestamp_ms=int((NOW - timedelta(days=number)).timestamp() * 1000),
    )


def test_versions_table_shows_aliases_and_their_owners() -> None:
    owner = json.dumps({"cluster": "cluster-a", "namespace": "billing", "name": "prod"})
    text = fmt.versions_table(
        [_version(1, {"approved": "true"}, "first\ntry"), _version(2)],
        {"production": 1, "staging": 2, "canary": 2},
        {"promptalias.io/owner.production": owner},
    )
    lines = text.splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "ALIASES", "TAGS", "MESSAGE"]
    assert lines[1].split() == ["2", "2026-01-08T12:00:00Z", "canary,staging", "-", "-"]
    assert lines[2].split() == ["1", "2026-01-09T12:00:00Z", "production", "approved=true", "first", "try"]
    assert lines[4].split() == ["ALIAS", "VERSION", "MANAGED", "BY"]
    assert lines[5].split() == ["canary", "2", "-"]
    assert lines[6].split() == ["production", "1", "cluster-a/billing/prod"]


def test_owner_text_of_unreadable_tags() -> None:
    assert fmt.owner_text(None) == "-"
    assert fmt.owner_text("not json") == "not json"


# ---- MLflow settings from the user's environment ---------------------------------------------------


def test_registry_config_reads_mlflow_tracking_variables() -> None:
    config = registry_access.registry_config(
        "https://mlflow.example.com/",
        {"MLFLOW_TRACKING_TOKEN": "tok", "MLFLOW_TRACKING_INSECURE_TLS": "true"},
        workspace="team",
    )
    assert config.tracking_uri == "https://mlflow.example.com"
    assert config.auth_kind == "bearer"
    assert config.insecure_skip_verify
    assert config.workspace == "team"
    basic = registry_access.registry_config(
        "http://m:5000", {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}
    )
    assert basic.auth_kind == "basic"
    assert "p" not in repr(basic).replace("http", "")


def test_registry_config_errors_say_what_to_do() -> None:
    with pytest.raises(errors.CliError, match="must be set together"):
        registry_access.registry_config("http://m:5000", {"MLFLOW_TRACKING_USERNAME": "u"})
    with pytest.raises(errors.CliError, match="pass --registry-uri") as info:
        registry_access.registry_config("file:///tmp/mlruns", {})
    assert info.value.code == errors.EXIT_ERROR


# ---- command decisions, with a stand-in for the cluster ---------------------------------------------


class FakeCluster:
    """A `Cluster` that records patches and answers alias reads from one stored object."""

    default_namespace = "billing"

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[Mapping[str, Any]] = []

    def list_aliases(self, namespace: str | None) -> list[dict[str, Any]]:
        return [self.obj]

    def get_alias(self, namespace: str, name: str) -> dict[str, Any]:
        return self.obj

    def patch_alias(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.patches.append(patch)
        return self.obj

    def list_experiments(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def get_experiment(self, namespace: str, name: str) -> dict[str, Any]:
        raise errors.CliError(f"PromptExperiment {name!r}: not found", "check the name")

    def patch_experiment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        raise errors.CliError(f"PromptExperiment {name!r}: not found", "check the name")

    def get_registry(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return {"spec": {"trackingUri": "http://127.0.0.1:5000"}}

    def close(self) -> None:
        pass

    def latest_warning(self, namespace: str, name: str, since: datetime) -> str | None:
        return "OwnedElsewhere: still owned by cluster-a/billing/prod"


def test_the_fake_is_a_cluster() -> None:
    cluster: Cluster = FakeCluster(_alias("prod"))  # mypy checks the Protocol here
    assert cluster.default_namespace == "billing"


def _args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_rollback_of_a_gitops_managed_object_prints_the_git_change_and_exits_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeCluster(
        _alias("prod", annotations={"argocd.argoproj.io/tracking-id": "invoice:x:billing/prod"})
    )
    code = plugin_cmds.cmd_rollback(_args(["rollback", "prod"]), fake)
    out = capsys.readouterr()
    assert code == errors.EXIT_GITOPS
    assert fake.patches == []
    assert "managed by Argo CD (Application invoice)" in out.err
    assert yaml.safe_load(out.out)["spec"] == {"version": 2}


def test_rollback_force_patches_a_gitops_managed_object(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster(_alias("prod", labels={"kustomize.toolkit.fluxcd.io/name": "apps"}))
    code = plugin_cmds.cmd_rollback(_args(["rollback", "prod", "--to", "1", "--force", "--no-wait"]), fake)
    assert code == errors.EXIT_OK
    assert fake.patches == [{"spec": {"version": 1}}]
    assert "--force" in capsys.readouterr().err


def test_rollback_honours_the_gitops_override_like_the_operator(capsys: pytest.CaptureFixture[str]) -> None:
    # promptalias.io/gitops: "false" says no tool applies the object, whatever marks it carries...
    marked = {"argocd.argoproj.io/tracking-id": "invoice:x:billing/prod", "promptalias.io/gitops": "false"}
    fake = FakeCluster(_alias("prod", annotations=marked))
    assert plugin_cmds.cmd_rollback(_args(["rollback", "prod", "--no-wait"]), fake) == errors.EXIT_OK
    assert fake.patches == [{"spec": {"version": 2}}]
    # ...and "true" says one does, even without marks: then the change belongs in Git.
    declared = FakeCluster(_alias("prod", annotations={"promptalias.io/gitops": "true"}))
    assert plugin_cmds.cmd_rollback(_args(["rollback", "prod"]), declared) == errors.EXIT_GITOPS
    assert declared.patches == []
    out = capsys.readouterr()
    assert f"managed by {DECLARED}" in out.err
    assert yaml.safe_load(out.out)["spec"] == {"version": 2}


def test_rollback_in_follow_mode_asks_the_operator(capsys: pytest.CaptureFixture[str]) -> None:
    # Follow mode writes no spec: GitOps marks do not matter, MLflow is where the truth lives.
    fake = FakeCluster(
        _alias("prod", version=None, annotations={"argocd.argoproj.io/tracking-id": "a:b:c/d"})
    )
    code = plugin_cmds.cmd_rollback(_args(["rollback", "prod", "--no-wait"]), fake)
    assert code == errors.EXIT_OK
    assert fake.patches == [{"metadata": {"annotations": {"promptalias.io/rollback-to": "2"}}}]


def test_rollback_without_a_previous_version_needs_to(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster(_alias("prod", previous=None))
    with pytest.raises(errors.CliError, match="--to N"):
        plugin_cmds.cmd_rollback(_args(["rollback", "prod"]), fake)
    assert plugin_cmds.cmd_rollback(_args(["rollback", "prod", "--to", "3"]), fake) == errors.EXIT_OK
    assert fake.patches == []
    assert "already 3" in capsys.readouterr().out


def test_takeover_refuses_follow_mode_and_skips_unblocked_objects(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(errors.CliError, match="needs no ownership"):
        plugin_cmds.cmd_takeover(_args(["takeover", "prod"]), FakeCluster(_alias("prod", version=None)))
    fake = FakeCluster(_alias("prod"))
    assert plugin_cmds.cmd_takeover(_args(["takeover", "prod"]), fake) == errors.EXIT_OK
    assert fake.patches == []
    assert "nothing to take over" in capsys.readouterr().out


class ScriptedCluster(FakeCluster):
    """Answers reads from a script of states (the last one repeats), as an operator would change them."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        super().__init__(states[0])
        self.states = states
        self.reads = 0

    def get_alias(self, namespace: str, name: str) -> dict[str, Any]:
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        return state


def _with(obj: dict[str, Any], annotations: dict[str, str], stalled: str | None = None) -> dict[str, Any]:
    changed: dict[str, Any] = json.loads(json.dumps(obj))
    changed["metadata"]["annotations"] = annotations
    if stalled:
        changed["status"]["conditions"].append(
            {"type": "Stalled", "status": "True", "reason": stalled, "message": "version 9 does not exist"}
        )
    return changed


def test_a_refused_request_is_withdrawn(capsys: pytest.CaptureFixture[str]) -> None:
    base = _alias("prod", version=None, resolved=3, previous=2)
    asked = {"promptalias.io/rollback-to": "9"}
    fake = ScriptedCluster([base, _with(base, asked), _with(base, asked, stalled="VersionNotFound")])
    with pytest.raises(errors.CliError) as info:
        plugin_cmds.cmd_rollback(_args(["rollback", "prod", "--to", "9"]), fake)
    assert info.value.code == errors.EXIT_PENDING
    assert "refused the request (VersionNotFound: version 9 does not exist)" in str(info.value)
    assert "withdrawn" in str(info.value)
    assert fake.patches == [
        {"metadata": {"annotations": {"promptalias.io/rollback-to": "9"}}},
        {"metadata": {"annotations": {"promptalias.io/rollback-to": None}}},
    ]


def test_a_performed_request_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    base = _alias("prod", version=None, resolved=3, previous=2)
    done = _alias("prod", version=None, resolved=2, previous=3)
    fake = ScriptedCluster([base, _with(base, {"promptalias.io/rollback-to": "2"}), done])
    assert plugin_cmds.cmd_rollback(_args(["rollback", "prod"]), fake) == errors.EXIT_OK
    assert "version 3 → 2" in capsys.readouterr().out


def test_an_unanswered_request_times_out_saying_how_to_cancel() -> None:
    base = _alias("prod", version=None, resolved=3, previous=2)
    fake = ScriptedCluster([base, _with(base, {"promptalias.io/rollback-to": "2"})])
    with pytest.raises(errors.CliError) as info:
        plugin_cmds.cmd_rollback(_args(["rollback", "prod", "--timeout", "0.3"]), fake)
    assert info.value.code == errors.EXIT_PENDING
    assert "did not act on the request within 0.3s" in str(info.value)
    assert "promptalias.io/rollback-to-" in str(info.value)


def test_a_consumed_request_with_another_result_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "CONSUMED_GRACE_S", 0.1)
    blocked = _alias("prod", resolved=None, ready=("False", "OwnedElsewhere"))
    fake = ScriptedCluster([blocked, _with(blocked, {"promptalias.io/takeover": "true"}), blocked])
    with pytest.raises(errors.CliError) as info:
        plugin_cmds.cmd_takeover(_args(["takeover", "prod"]), fake)
    assert "took the request, but the result is not the one asked for" in str(info.value)
    assert "Ready=False OwnedElsewhere" in str(info.value)
    assert "last warning: OwnedElsewhere: still owned by cluster-a/billing/prod" in str(info.value)


# ---- argument parsing and error reporting -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["rollback", "x", "--to", "0"],
        ["rollback", "x", "--to", "two"],
        ["diff", "x"],
        ["get", "-o", "wide"],
        ["rollback", "x", "--timeout", "soon"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_durations_for_timeout() -> None:
    assert _args(["rollback", "x", "--timeout", "2m"]).timeout == 120.0
    assert _args(["rollback", "x", "--timeout", "5"]).timeout == 5.0


def test_no_kubeconfig_is_a_clear_error_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main(["get", "--kubeconfig", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no usable Kubernetes configuration in {missing}")
    assert "KUBECONFIG" in err
    assert "Traceback" not in err


def test_unreachable_api_server_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptalias.testbed.ports import free_port

    kubeconfig = tmp_path / "kubeconfig"
    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns1"}}],
                "current-context": "x",
            }
        )
    )
    assert main(["history", "prod", "--kubeconfig", str(kubeconfig)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the Kubernetes API server at {server}")
    assert "kubectl cluster-info" in err


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            404,
            {"reason": "NotFound", "details": {"name": "prod"}},
            "PromptAlias 'prod' in namespace 'b': not found",
        ),
        (404, {"message": "the server could not find the requested resource"}, "is not installed"),
        (403, {"message": "promptaliases is forbidden: User x"}, "forbidden (promptaliases is forbidden"),
        (401, {}, "refused your credentials"),
    ],
)
def test_api_errors_are_mapped_to_advice(status: int, body: dict[str, Any], expected: str) -> None:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps(body)
    error = api_error("https://k8s", "PromptAlias 'prod' in namespace 'b'", exc)
    assert expected in str(error)
    assert error.code == errors.EXIT_ERROR


def test_versions_document_has_the_table_facts() -> None:
    owner = json.dumps({"cluster": "cluster-a", "namespace": "billing", "name": "prod"})
    doc = fmt.versions_document(
        "p",
        [_version(1, {"approved": "true", "promptalias.io/moved.production": "{}"}), _version(2)],
        {"production": 1},
        {"promptalias.io/owner.production": owner},
    )
    assert doc["aliases"] == {"production": {"version": 1, "managedBy": "cluster-a/billing/prod"}}
    assert [v["version"] for v in doc["versions"]] == [2, 1]
    assert doc["versions"][1] == {
        "version": 1,
        "created": "2026-01-09T12:00:00Z",
        "aliases": ["production"],
        "tags": {"approved": "true"},
        "message": None,
    }

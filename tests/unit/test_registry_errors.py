"""Mapping MLflow's HTTP answers (bodies captured from mlflow 3.17.2) to registry errors."""

from __future__ import annotations

import json

import pytest

from promptalias.registry import (
    AliasNotFound,
    PromptNotFound,
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryRejected,
    RegistryTLSError,
    RegistryUnavailable,
    VersionNotFound,
)
from promptalias.registry.errors import Call, error_from_response

URI = "https://mlflow.example.com/mlflow"


def body(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message, "error_class": "X"}).encode()


def call(op: str, **kw: object) -> Call:
    return Call(op=op, uri=URI, **kw)  # type: ignore[arg-type]


def test_missing_prompt_on_read() -> None:
    err = error_from_response(
        call("get prompt", prompt="p"),
        404,
        body("RESOURCE_DOES_NOT_EXIST", "Registered Model with name=p not found"),
    )
    assert type(err) is PromptNotFound
    assert str(err).startswith(f"prompt 'p' does not exist in MLflow at {URI}: register it")
    assert not err.retryable


def test_missing_version_on_read() -> None:
    err = error_from_response(
        call("get version", prompt="p", version=9),
        404,
        body("RESOURCE_DOES_NOT_EXIST", "Model Version (name=p, version=9) not found"),
    )
    assert type(err) is VersionNotFound
    assert "version 9 of prompt 'p' does not exist" in str(err)
    assert "or the prompt itself" not in str(err)


def test_missing_version_on_set_alias_may_mean_a_missing_prompt() -> None:
    # MLflow answers the same 404 for a missing version and a missing prompt.
    err = error_from_response(
        call("set alias", prompt="p", version=9, alias="production"),
        404,
        body("RESOURCE_DOES_NOT_EXIST", "Model Version (name=p, version=9) not found"),
    )
    assert type(err) is VersionNotFound
    assert "(or the prompt itself does not exist)" in str(err)
    assert isinstance(err, RegistryNotFound)


def test_missing_alias_is_a_400_in_mlflow() -> None:
    err = error_from_response(
        call("get version by alias", prompt="p", alias="nope"),
        400,
        body("INVALID_PARAMETER_VALUE", "Registered model alias nope not found."),
    )
    assert type(err) is AliasNotFound
    assert "prompt 'p' has no alias 'nope'" in str(err)


def test_reserved_alias_is_rejected_not_retried() -> None:
    err = error_from_response(
        call("set alias", prompt="p", version=1, alias="latest"),
        400,
        body("INVALID_PARAMETER_VALUE", "'latest' alias name (case insensitive) is reserved."),
    )
    assert type(err) is RegistryRejected
    assert not err.retryable
    assert err.status == 400
    assert err.error_code == "INVALID_PARAMETER_VALUE"
    assert "'latest' alias name (case insensitive) is reserved;" in str(err)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_trouble_is_transient(status: int) -> None:
    err = error_from_response(call("get prompt", prompt="p"), status, b"<html>Bad Gateway</html>")
    assert type(err) is RegistryUnavailable
    assert err.retryable
    assert f"HTTP {status}" in str(err)


def test_retry_after_is_passed_on() -> None:
    err = error_from_response(call("set alias", prompt="p"), 429, b"slow down", retry_after="7")
    assert isinstance(err, RegistryUnavailable)
    assert err.retry_after == 7
    for header in (None, "Wed, 21 Oct 2015 07:28:00 GMT", "-1"):
        err = error_from_response(call("set alias", prompt="p"), 503, b"", retry_after=header)
        assert isinstance(err, RegistryUnavailable)
        assert err.retry_after is None


def test_mlflow_internal_error_is_transient() -> None:
    err = error_from_response(
        call("get prompt", prompt="p"), 500, body("INTERNAL_ERROR", "database is locked")
    )
    assert type(err) is RegistryUnavailable
    assert "database is locked" in str(err)


def test_workspace_on_a_server_without_workspaces_is_a_config_error() -> None:
    err = error_from_response(
        call("get prompt", prompt="p", workspace="team-a"),
        500,
        body(
            "FEATURE_DISABLED", "Workspace APIs are not available: workspaces are not enabled on this server"
        ),
    )
    assert type(err) is RegistryRejected
    assert "unset the registry's workspace, or start MLflow with --enable-workspaces" in str(err)


def test_missing_workspace_is_a_config_error() -> None:
    err = error_from_response(
        call("get prompt", prompt="p", workspace="nope"),
        404,
        body("RESOURCE_DOES_NOT_EXIST", "Workspace 'nope' not found"),
    )
    assert type(err) is RegistryRejected
    assert "create workspace 'nope' in MLflow or fix the registry's workspace" in str(err)


def test_workspace_is_named_in_not_found_messages() -> None:
    err = error_from_response(
        call("get prompt", prompt="p", workspace="team-a"),
        404,
        body("RESOURCE_DOES_NOT_EXIST", "Registered Model with name=p not found"),
    )
    assert type(err) is PromptNotFound
    assert "(workspace 'team-a')" in str(err)


def test_401_without_credentials_says_to_configure_them() -> None:
    err = error_from_response(call("get prompt", prompt="p"), 401, b"You are not authenticated.")
    assert type(err) is RegistryAuthError
    assert "configure a token or username/password" in str(err)


def test_401_with_credentials_says_to_check_them() -> None:
    err = error_from_response(
        call("get prompt", prompt="p", credentials=True), 401, b"You are not authenticated."
    )
    assert type(err) is RegistryAuthError
    assert "check the token or username/password" in str(err)


def test_403_names_the_permission() -> None:
    err = error_from_response(
        call("delete alias", prompt="p", alias="a", credentials=True),
        403,
        b"Permission denied",
    )
    assert type(err) is RegistryAuthError
    assert "lacks permission" in str(err)
    assert "MANAGE" in str(err)


def test_html_404_means_a_wrong_base_url() -> None:
    err = error_from_response(
        call("get prompt", prompt="p"), 404, b"<!doctype html><title>404 Not Found</title>"
    )
    assert type(err) is RegistryProtocolError
    assert "path prefix" in str(err)


def test_long_server_messages_are_cut() -> None:
    err = error_from_response(call("get prompt", prompt="p"), 503, b"x" * 5000)
    assert len(str(err)) < 700


def test_hierarchy() -> None:
    assert issubclass(RegistryTLSError, RegistryUnavailable)
    for cls in (
        RegistryUnavailable,
        RegistryAuthError,
        RegistryNotFound,
        RegistryRejected,
        RegistryProtocolError,
    ):
        assert issubclass(cls, RegistryError)
    for cls in (PromptNotFound, VersionNotFound, AliasNotFound):
        assert issubclass(cls, RegistryNotFound)

"""RegistryConfig validation and its promise never to show a secret."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest

from promptalias.registry import MlflowRegistry, RegistryConfig, VersionCache
from promptalias.testbed.certs import write_pki

TOKEN = "tok-SECRET-123"
PASSWORD = "pw-SECRET-456"


def test_repr_hides_token() -> None:
    config = RegistryConfig("https://mlflow.example.com/", token=TOKEN, timeout_s=2)
    for text in (repr(config), str(config), f"{config}", repr(MlflowRegistry(config, cache=VersionCache()))):
        assert TOKEN not in text
        assert "bearer(token=***)" in text
        assert "https://mlflow.example.com'" in text  # trailing slash dropped


def test_repr_hides_password_but_names_the_user() -> None:
    config = RegistryConfig("http://mlflow:5000", username="alice", password=PASSWORD, workspace="team-a")
    assert PASSWORD not in repr(config)
    assert "basic(username='alice')" in repr(config)
    assert "workspace='team-a'" in repr(config)


def test_basic_wins_over_bearer_like_mlflow() -> None:
    config = RegistryConfig("http://mlflow:5000", token=TOKEN, username="alice", password=PASSWORD)
    assert config.auth_kind == "basic"
    assert RegistryConfig("http://mlflow:5000").auth_kind == "none"


def test_defaults() -> None:
    config = RegistryConfig("http://mlflow:5000")
    assert config.timeout_s == 5
    assert config.workspace is None
    assert not config.insecure_skip_verify


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tracking_uri": "file:///tmp/mlruns"}, "http:// or https://"),
        ({"tracking_uri": "databricks"}, "http:// or https://"),
        ({"tracking_uri": "http://"}, "http:// or https://"),
        ({"tracking_uri": "http://host:99999"}, "invalid port"),
        ({"tracking_uri": "http://mlflow:5000?x=1"}, "query string"),
        ({"tracking_uri": "http://mlflow:5000", "username": "alice"}, "together"),
        ({"tracking_uri": "http://mlflow:5000", "timeout_s": 0}, "timeout_s"),
        ({"tracking_uri": "http://mlflow:5000", "workspace": " "}, "workspace"),
        ({"tracking_uri": "https://mlflow", "ca_data": "not a pem"}, "ca_data is not a valid PEM"),
        ({"tracking_uri": "https://mlflow", "ca_file": "/nonexistent/ca.pem"}, "does not exist"),
    ],
)
def test_invalid_configs(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RegistryConfig(**kwargs)  # type: ignore[arg-type]


def test_credentials_in_the_uri_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="must not contain credentials") as info:
        RegistryConfig(f"https://alice:{PASSWORD}@mlflow.example.com")
    assert PASSWORD not in str(info.value)


def test_insecure_skip_verify() -> None:
    config = RegistryConfig("https://mlflow", insecure_skip_verify=True, ca_data="ignored")
    assert config.ssl_context() is False


def test_ca_data_replaces_the_system_store(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    pem = pki.ca_crt.read_text()
    for config in (
        RegistryConfig("https://mlflow", ca_data=pem),
        RegistryConfig("https://mlflow", ca_file=str(pki.ca_crt)),
    ):
        context = config.ssl_context()
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "promptalias-testbed-ca"),),)
        ]


def test_config_is_frozen() -> None:
    config = RegistryConfig("http://mlflow:5000")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.token = "x"  # type: ignore[misc]

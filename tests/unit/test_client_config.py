"""How the operator's clients (promptalias.kube, promptalias.registry) read TLS, proxy and auth settings."""

from __future__ import annotations

import ssl

import pytest
from kubernetes import client

from promptalias.kube.client import Kube, _api_message, _api_path, _proxy_for, ssl_context


def _config(host: str = "https://10.0.0.1:6443") -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = host
    return configuration


def test_paths_of_namespaced_and_cluster_objects() -> None:
    assert (
        _api_path("promptaliases", "ns", "a") == "/apis/promptalias.io/v1alpha1/namespaces/ns/promptaliases/a"
    )
    assert (
        _api_path("clusterpromptregistries", None) == "/apis/promptalias.io/v1alpha1/clusterpromptregistries"
    )
    assert _api_path("kopfpeerings", "ns", group="kopf.dev") == "/apis/kopf.dev/v1/namespaces/ns/kopfpeerings"


def test_tls_follows_the_configuration() -> None:
    insecure = _config()
    insecure.verify_ssl = False
    assert ssl_context(insecure) is False
    assert ssl_context(_config("http://127.0.0.1:8080")) is True
    checked = ssl_context(_config())
    assert isinstance(checked, ssl.SSLContext)
    assert checked.check_hostname


def test_proxy_and_no_proxy() -> None:
    configuration = _config("https://api.example.internal:6443")
    assert _proxy_for(configuration) is None
    configuration.proxy = "http://proxy:3128"
    assert _proxy_for(configuration) == "http://proxy:3128"
    configuration.no_proxy = "localhost, .example.internal"
    assert _proxy_for(configuration) is None


def test_bearer_token_is_asked_for_on_every_request() -> None:
    configuration = _config()
    tokens = iter(["Bearer one", "Bearer two"])

    def refresh(cfg: client.Configuration) -> None:  # what load_incluster_config installs
        cfg.api_key["authorization"] = next(tokens)

    configuration.api_key["authorization"] = "Bearer zero"  # read when the config was loaded
    configuration.refresh_api_key_hook = refresh
    kube = Kube(configuration)
    assert kube._auth_headers() == {"authorization": "Bearer one"}
    assert kube._auth_headers() == {"authorization": "Bearer two"}
    assert Kube(_config())._auth_headers() == {}


def test_api_message_is_quoted_when_present() -> None:
    assert _api_message(b'{"kind": "Status", "message": "denied"}') == ": denied"
    assert _api_message(b"<html>") == ""
    assert _api_message(b"[]") == ""


def test_mlflow_proxy_is_read_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptalias.registry.client import _env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "mlflow.local")
    found = _env_proxy("https://mlflow.example.com")
    assert found is not None
    assert str(found[0]) == "http://proxy.internal:3128"
    assert _env_proxy("https://mlflow.local:5000") is None
    assert _env_proxy("http://mlflow.example.com") is None  # no HTTP_PROXY set

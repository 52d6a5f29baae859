"""Sidecar configuration: kubeconfig / in-cluster connection, CLI parsing, signal targets, debounce."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptalias.sidecar.kubeconfig import (
    KubeConfigError,
    TokenSource,
    from_kubeconfig,
    in_cluster,
    load_connection,
)
from promptalias.sidecar.main import build_parser, config_from_args
from promptalias.sidecar.notify import Notifier, SignalTarget, parse_signal_target
from promptalias.testbed.certs import write_pki


def kubeconfig(
    path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None, **context: Any
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", **context}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def test_client_certificate_files_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    pki = write_pki(tmp_path / "pki")
    conn = from_kubeconfig(
        str(
            kubeconfig(
                tmp_path / "config",
                {"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key"},
                {"server": "https://127.0.0.1:6443/", "certificate-authority": str(pki.ca_crt)},
                namespace="billing",
            )
        )
    )
    assert conn.server == "https://127.0.0.1:6443"
    assert isinstance(conn.ssl_context, ssl.SSLContext)
    assert conn.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert conn.namespace == "billing"
    assert "Authorization" not in conn.headers()


def test_inline_certificate_data_and_token(tmp_path: Path) -> None:
    pki = write_pki(tmp_path / "pki")

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    conn = from_kubeconfig(
        str(
            kubeconfig(
                tmp_path / "config",
                {"client-certificate-data": b64(pki.admin_crt), "client-key-data": b64(pki.admin_key)},
                {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64(pki.ca_crt)},
            )
        )
    )
    assert isinstance(conn.ssl_context, ssl.SSLContext)
    token_conn = from_kubeconfig(str(kubeconfig(tmp_path / "t", {"token": "abc"})))
    assert token_conn.headers()["Authorization"] == "Bearer abc"
    basic = from_kubeconfig(str(kubeconfig(tmp_path / "b", {"username": "u", "password": "p"})))
    assert basic.headers()["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    insecure = from_kubeconfig(
        str(kubeconfig(tmp_path / "i", {}, {"server": "https://x:1", "insecure-skip-tls-verify": True}))
    )
    assert isinstance(insecure.ssl_context, ssl.SSLContext)
    assert insecure.ssl_context.verify_mode == ssl.CERT_NONE
    sni = from_kubeconfig(
        str(kubeconfig(tmp_path / "s", {}, {"server": "https://x:1", "tls-server-name": "api"}))
    )
    assert sni.server_hostname == "api"


def test_token_file_is_reread_when_rotated(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("one\n")
    source = TokenSource(path=str(token_file))
    assert source.get() == "one"
    time.sleep(0.01)
    token_file.write_text("two")
    os.utime(token_file, (time.time() + 5, time.time() + 5))
    assert source.get() == "two"
    token_file.unlink()
    assert source.get() == "two"  # keep the last one; the apiserver decides


@pytest.mark.parametrize(
    ("user", "cluster", "match"),
    [
        ({"exec": {"command": "aws"}}, None, "exec/auth-provider"),
        ({}, {"server": "ftp://x"}, "no http"),
        ({"client-certificate": "x.crt"}, None, "only one of"),
        ({"client-key-data": "eA=="}, None, "only one of"),
        ({}, {"server": "https://x:1", "certificate-authority-data": "***"}, "base64"),
    ],
)
def test_kubeconfig_errors_say_what_to_fix(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None, match: str
) -> None:
    with pytest.raises(KubeConfigError, match=match):
        from_kubeconfig(str(kubeconfig(tmp_path / "config", user, cluster)))


def test_missing_context_and_file(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"token": "t"})
    with pytest.raises(KubeConfigError, match="no context named 'other'"):
        from_kubeconfig(str(path), "other")
    with pytest.raises(KubeConfigError, match="cannot read"):
        from_kubeconfig(str(tmp_path / "missing"))


def test_in_cluster(tmp_path: Path) -> None:
    pki = write_pki(tmp_path / "pki")
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "ca.crt").write_bytes(pki.ca_crt.read_bytes())
    (sa / "namespace").write_text("billing\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    conn = in_cluster(env, str(sa))
    assert conn is not None
    assert conn.server == "https://10.0.0.1:443"
    assert conn.namespace == "billing"
    assert conn.headers()["Authorization"] == "Bearer sa-token"
    assert in_cluster({}, str(sa)) is None
    v6 = in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, str(sa))
    assert v6 is not None
    assert v6.server == "https://[fd00::1]:443"
    # Order: explicit file, $KUBECONFIG, in-cluster, ~/.kube/config.
    path = kubeconfig(tmp_path / "config", {"token": "t"})
    assert load_connection(str(path), environ=env, sa_dir=str(sa)).source.startswith("kubeconfig")
    assert load_connection(environ={**env, "KUBECONFIG": f"/nope:{path}"}, sa_dir=str(sa)).source.startswith(
        "kubeconfig"
    )
    assert load_connection(environ=env, sa_dir=str(sa)).source == "in-cluster service account"


def test_cli_parsing(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"token": "t"}, namespace="from-config")
    args = build_parser().parse_args(
        [
            "--dir", str(tmp_path / "d"), "--listen", "127.0.0.1:9000", "--names", "a, b,",
            "--notify-signal", "1:HUP", "--kubeconfig", str(path), "--stale-after", "30",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 9000)
    assert config.names == ["a", "b"]
    assert config.notify_signal == SignalTarget(1, int(signal.SIGHUP))
    assert config.namespace == "from-config"
    assert config.stale_after == 30
    file_mode = config_from_args(build_parser().parse_args(["--from-dir", str(tmp_path)]))
    assert file_mode.connection is None
    with pytest.raises(ValueError, match="--dir is required"):
        config_from_args(build_parser().parse_args(["--kubeconfig", str(path)]))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--notify-url", "http://x", "--notify-signal", "1:HUP"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--listen", "nope"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:HUP", (1, signal.SIGHUP)),
        ("42:SIGUSR1", (42, signal.SIGUSR1)),
        ("7:10", (7, 10)),
        ("7:term", (7, 15)),
    ],
)
def test_signal_targets(text: str, expected: tuple[int, int]) -> None:
    assert parse_signal_target(text) == SignalTarget(expected[0], int(expected[1]))


@pytest.mark.parametrize("text", ["HUP", "x:HUP", "1:", "1:NOPE"])
def test_bad_signal_targets(text: str) -> None:
    with pytest.raises(ValueError, match="signal"):
        parse_signal_target(text)


def test_notifier_debounces_bursts() -> None:
    async def scenario() -> list[list[str]]:
        fired: list[list[str]] = []
        notifier = Notifier(debounce=0.1, max_delay=0.5)

        async def record(keys: list[str]) -> None:
            fired.append(keys)

        notifier.fire = record  # type: ignore[method-assign]
        task = asyncio.create_task(notifier.run())
        for key in ("a", "b", "c"):
            notifier.changed({key})
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert fired == [["a", "b", "c"]]
        # A steady stream still notifies within max_delay.
        for i in range(20):
            notifier.changed({f"k{i}"})
            await asyncio.sleep(0.05)
        task.cancel()
        return fired

    fired = asyncio.run(scenario())
    assert len(fired) >= 3

"""The node's DNS pieces (pure): the Corefile, the selectorless Services, the tiny DNS client."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

from promptalias.testbed import dns, node

REPO = Path(__file__).resolve().parents[2]


def test_corefile_answers_cluster_zones_only_on_the_node_ip(tmp_path: Path) -> None:
    text = dns.corefile(
        bind_ip=node.NODE_IP,
        kubeconfig=tmp_path / "kubeconfig",
        health_port=1,
        ready_port=2,
        loopback="127.0.0.1",
    )
    first = text.splitlines()[0]
    assert first == "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {"  # no root zone: nothing else is served
    assert "forward" not in text  # no upstream: no query leaves the machine
    assert f"bind {node.NODE_IP}" in text
    assert "health 127.0.0.1:1" in text
    assert "ready 127.0.0.1:2" in text
    assert f"kubeconfig {tmp_path / 'kubeconfig'}" in text


def test_corefile_uses_only_plugins_compiled_into_hack_coredns(tmp_path: Path) -> None:
    main = (REPO / "hack" / "coredns" / "main.go").read_text()
    text = dns.corefile(
        bind_ip="10.254.0.1", kubeconfig=tmp_path, health_port=1, ready_port=2, loopback="127.0.0.1"
    )
    used = {line.split()[0] for line in text.splitlines()[1:] if line.startswith("    ") and line[4] != " "}
    used.discard("}")
    for plugin in used:
        assert f'"github.com/coredns/coredns/plugin/{plugin}"' in main, plugin
        assert f'"{plugin}",' in main, f"{plugin} missing from the directives"


def test_dns_service_is_selectorless_with_a_fixed_cluster_ip() -> None:
    items = json.loads(dns.dns_service(node.NODE_IP, node.CLUSTER_DNS))["items"]
    service, slice_ = items
    assert service["metadata"] == {
        "name": "kube-dns",
        "namespace": "kube-system",
        "labels": {"app.kubernetes.io/managed-by": dns.MANAGED_BY},
    }
    assert "selector" not in service["spec"]
    assert service["spec"]["clusterIP"] == "10.0.0.10"
    assert {(p["name"], p["protocol"], p["port"]) for p in service["spec"]["ports"]} == {
        ("dns", "UDP", 53),
        ("dns-tcp", "TCP", 53),
    }
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    # not the endpointslice controller's: it never touches (or deletes) this slice
    assert (
        slice_["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
        != "endpointslice-controller.k8s.io"
    )
    assert slice_["endpoints"] == [{"addresses": [node.NODE_IP], "conditions": {"ready": True}}]


def test_selectorless_service_maps_ports_by_name_to_the_target() -> None:
    items = json.loads(
        dns.selectorless_service(
            "mlflow", "mlflow", "10.254.0.1", [("http", "TCP", 5000, 41234)], create_namespace=True
        )
    )["items"]
    namespace, service, slice_ = items
    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlflow"}}
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 5000, "targetPort": 41234}
    ]
    assert "clusterIP" not in service["spec"]
    assert slice_["ports"] == [{"name": "http", "protocol": "TCP", "port": 41234}]


def _answer(query: bytes, rcode: int, addresses: list[str]) -> bytes:
    ident = struct.unpack("!H", query[:2])[0]
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(addresses), 0, 0)
    body = query[12:]
    for address in addresses:  # name as a pointer to the question (offset 12)
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(address)
    return header + body


def test_query_and_answer_round_trip() -> None:
    query = dns.query_packet("kubernetes.default.svc.cluster.local", 4242)
    assert query[:2] == struct.pack("!H", 4242)
    assert b"\x0akubernetes\x07default\x03svc\x07cluster\x05local\x00" in query
    assert dns.parse_answer(_answer(query, 0, ["10.0.0.1", "10.0.0.2"]), 4242) == (
        0,
        ["10.0.0.1", "10.0.0.2"],
    )
    assert dns.parse_answer(_answer(query, 3, []), 4242) == (3, [])  # NXDOMAIN


def test_an_answer_to_another_query_is_rejected() -> None:
    query = dns.query_packet("a.b", 1)
    try:
        dns.parse_answer(_answer(query, 0, []), 2)
    except ValueError:
        return
    raise AssertionError("an answer with the wrong id was accepted")

"""In-cluster DNS for the testbed's node: CoreDNS as a supervised process on the node IP.

CoreDNS (built from its Go module, hack/coredns: kubernetes, cache, errors, health, ready, loop,
reload, loadbalance and bind, no forward plugin) answers `<svc>.<ns>.svc.cluster.local`, pod and
reverse names from the apiserver, and nothing else: names outside the cluster's zones are REFUSED,
so no query ever leaves the machine. It listens on the node IP only; the `kube-dns` Service
(ClusterIP 10.0.0.10 in the testbed's Service range, no selector) points at it through an
EndpointSlice, kube-proxy carries pods' queries there, and kubelet's `clusterDNS` names it.

The same selectorless-Service shape exposes host processes to pods by name, e.g. the testbed's
MLflow as `mlflow.mlflow.svc:5000`.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
from pathlib import Path
from typing import Any

CLUSTER_DOMAIN = "cluster.local"
DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DNS_PORT = 53
ZONES = (CLUSTER_DOMAIN, "in-addr.arpa", "ip6.arpa")
MANAGED_BY = "promptalias-testbed"


def corefile(*, bind_ip: str, kubeconfig: Path, health_port: int, ready_port: int, loopback: str) -> str:
    """The Corefile: cluster zones only (no forward), bound to the node IP, health/ready on loopback."""
    zones = " ".join(f"{zone}:{DNS_PORT}" for zone in ZONES)
    return f"""{zones} {{
    bind {bind_ip}
    errors
    health {loopback}:{health_port}
    ready {loopback}:{ready_port}
    kubernetes {" ".join(ZONES)} {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
    cache 5
    loop
    reload
    loadbalance
}}
"""


def selectorless_service(
    name: str,
    namespace: str,
    address: str,
    ports: list[tuple[str, str, int, int]],
    cluster_ip: str | None = None,
    *,
    create_namespace: bool = False,
) -> str:
    """A Service without selector + its EndpointSlice: pods reach `address` through kube-proxy.

    `ports` are (name, protocol, service port, target port); kube-proxy matches them by name.
    """
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": n, "protocol": p, "port": port, "targetPort": target} for n, p, port, target in ports
            ],
        },
    }
    if cluster_ip:
        service["spec"]["clusterIP"] = cluster_ip
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-testbed",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": n, "protocol": p, "port": target} for n, p, _, target in ports],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }
    items = [service, endpoints]
    if create_namespace:
        items.insert(0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2)


def dns_service(node_ip: str, cluster_ip: str) -> str:
    return selectorless_service(
        DNS_SERVICE,
        DNS_NAMESPACE,
        node_ip,
        [("dns", "UDP", DNS_PORT, DNS_PORT), ("dns-tcp", "TCP", DNS_PORT, DNS_PORT)],
        cluster_ip=cluster_ip,
    )


# ---- a minimal DNS client (A records over UDP), to check the server from the host ----------------


def query_packet(name: str, query_id: int) -> bytes:
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # recursion desired, one question
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split("."))
    return header + labels + b"\0" + struct.pack("!HH", 1, 1)  # QTYPE A, QCLASS IN


def _skip_name(packet: bytes, offset: int) -> int:
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:  # compression pointer: two bytes, ends the name
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def parse_answer(packet: bytes, query_id: int) -> tuple[int, list[str]]:
    """(rcode, A addresses) of a response to `query_id`."""
    ident, flags, questions, answers = struct.unpack("!HHHH", packet[:8])
    if ident != query_id:
        raise ValueError(f"answer to query {ident}, expected {query_id}")
    offset = 12
    for _ in range(questions):
        offset = _skip_name(packet, offset) + 4
    addresses = []
    for _ in range(answers):
        offset = _skip_name(packet, offset)
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", packet[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(packet[offset : offset + 4]))
        offset += length
    return flags & 0xF, addresses


def resolve_a(server: str, name: str, *, port: int = DNS_PORT, timeout: float = 2.0) -> tuple[int, list[str]]:
    """Ask `server` (an address on this machine) for the A records of `name`: (rcode, addresses)."""
    query_id = secrets.randbelow(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query_packet(name, query_id), (server, port))
        while True:
            packet, _ = sock.recvfrom(4096)
            try:
                return parse_answer(packet, query_id)
            except ValueError:
                continue

"""Free loopback ports. The testbed only ever binds 127.0.0.1."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Final

LOOPBACK = "127.0.0.1"
# Ports handed out lie below the kernel's ephemeral range, where no outgoing connection of any
# process can take one between our pick and the server's bind (an ephemeral port from bind(0) can
# be: a test's operator once lost its webhook port so), and below 30000, Kubernetes' NodePort range,
# and above the 10xxx ports of the node's kubelet, kube-proxy and control plane.
PICK_FROM: Final = 15000
PICK_BELOW: Final = 30000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _pick_range() -> tuple[int, int]:
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    return PICK_FROM, min(PICK_BELOW, ephemeral_low)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago, outside the ephemeral range (callers retry if
    a server loses the race to another server)."""
    low, high = _pick_range()
    if high - low >= 1000:
        for _ in range(200):
            port = random.randrange(low, high)  # noqa: S311 - spreading picks, not a secret
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # an odd machine: any free port
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0

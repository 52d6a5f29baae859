"""Ports the testbed hands out stay out of the kernel's ephemeral range (testbed/ports.py)."""

from __future__ import annotations

import socket

from promptalias.testbed.ports import LOOPBACK, PICK_BELOW, PICK_FROM, _pick_range, free_port


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low, high = _pick_range()
    assert PICK_FROM <= low < high <= PICK_BELOW
    for _ in range(50):
        port = free_port()
        assert low <= port < high
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, port))


def test_a_taken_port_is_not_handed_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((LOOPBACK, free_port()))
        held.listen()
        taken = held.getsockname()[1]
        assert all(free_port() != taken for _ in range(300))

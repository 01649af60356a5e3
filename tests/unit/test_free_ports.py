"""Ports for a test's worker: different from each other, and free."""

from __future__ import annotations

import socket

from tests.support.stream import free_ports


def test_ports_chosen_together_differ_and_can_be_bound() -> None:
    """A worker needs a metrics and a web port that differ (it refuses to start otherwise):
    two single picks in a row can get the same port back, ports picked together never do."""
    for _ in range(300):
        ports = free_ports(3)
        assert len(set(ports)) == 3
    for port in free_ports(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free again once chosen

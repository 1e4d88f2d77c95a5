"""The local broker's ports: never the same one twice (a listener and its controller once got one)."""

from __future__ import annotations

from pipelines.devtools.localkafka import free_port


def test_free_ports_handed_out_are_all_different():
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)

"""Small helpers shared by the fixtures (and usable directly by tests)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on *host* right now.

    The port is only reserved while this function runs: start the server that
    uses it soon, and be ready to retry with another port if it was taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port

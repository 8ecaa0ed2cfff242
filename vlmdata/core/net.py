"""Loopback helpers shared by the launcher, the trainer and the tests."""

import socket


def free_port() -> int:
    """A TCP port free on this machine's loopback right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

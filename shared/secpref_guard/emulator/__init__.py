"""A moto-style local emulator of the IMS account settings API (the security preference and the
password policy, from the field tables), with STS, Resource Manager and Function Compute."""

from .mock import mock_endpoint
from .models import DEFAULT_ACCOUNT, ImsBackend
from .responses import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Emulator
from .server import BackgroundServer, make_server

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "DEFAULT_ACCOUNT",
    "BackgroundServer",
    "Emulator",
    "ImsBackend",
    "make_server",
    "mock_endpoint",
]

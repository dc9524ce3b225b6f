"""aliyun-python-sdk-core, loaded when the first client is made and no more than needed.

- The SDK is imported on first use, not with the modules that call it.
- Its RSA key-pair signer's algorithm module, which pulls in ``cryptography`` (~20 ms) for a
  signer the guard never uses, loads lazily (importlib's LazyLoader), whoever imports the SDK
  first (this package, or oss2, which imports it too): the finder is installed when this module
  is imported, which client.py does before any SDK import.
- One ``AcsClient`` per thread (its HTTP session, so connections are reused, and the endpoint
  data every ``AcsClient()`` parses, 5-6 ms), shared by every ``RpcClient`` of the thread: each
  call signs with its own client's key pair.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import TYPE_CHECKING, Any

from .logs import silence_sdk_loggers

if TYPE_CHECKING:
    from aliyunsdkcore.client import AcsClient

# Modules of the SDK that its import pulls in for features the guard never uses, loaded on
# first attribute access instead (importlib's LazyLoader): the RSA key-pair signer's algorithm.
_SDK_LAZY_MODULES = frozenset({"aliyunsdkcore.auth.algorithm.sha_hmac256"})
_sdk_lock = threading.Lock()
_sdk: dict[str, Any] = {}
_threads = threading.local()


class _LazySdkModules:
    """A meta path finder that hands out the modules above with a LazyLoader, whoever imports
    the SDK first (this module, or oss2, which imports it too). Installed when this module is
    imported, before any SDK import: the handlers and the CLI import this module first."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _SDK_LAZY_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


if not any(isinstance(f, _LazySdkModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _LazySdkModules())


def sdk() -> dict[str, Any]:
    """The parts of aliyun-python-sdk-core this module uses, imported on first need."""
    if not _sdk:
        with _sdk_lock:
            if not _sdk:
                from aliyunsdkcore.acs_exception.exceptions import (
                    ClientException,
                    ServerException,
                )
                from aliyunsdkcore.auth.credentials import AccessKeyCredential
                from aliyunsdkcore.auth.signers.access_key_signer import AccessKeySigner
                from aliyunsdkcore.client import AcsClient
                from aliyunsdkcore.request import CommonRequest

                silence_sdk_loggers()  # the import may have created SDK loggers
                _sdk.update(
                    AcsClient=AcsClient,
                    CommonRequest=CommonRequest,
                    ClientException=ClientException,
                    ServerException=ServerException,
                    AccessKeyCredential=AccessKeyCredential,
                    AccessKeySigner=AccessKeySigner,
                )
    return _sdk


def thread_acs_client(region_id: str, connect_timeout: int, read_timeout: int) -> AcsClient:
    """This thread's ``AcsClient`` for these settings, made once (no SDK retry). It holds no
    usable key: every call sets the signer of the ``RpcClient`` that makes it."""
    clients: dict[tuple[str, int, int], AcsClient] | None = getattr(_threads, "clients", None)
    if clients is None:
        clients = _threads.clients = {}
    key = (region_id, connect_timeout, read_timeout)
    acs = clients.get(key)
    if acs is None:
        acs = clients[key] = sdk()["AcsClient"](
            ak="unset",
            secret="unset",  # noqa: S106 - a placeholder: each call sets its own signer
            region_id=region_id,
            auto_retry=False,
            connect_timeout=connect_timeout,
            timeout=read_timeout,
        )
        silence_sdk_loggers()
    return acs

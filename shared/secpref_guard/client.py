"""Alibaba Cloud RPC calls through aliyun-python-sdk-core, made safe to rely on.

What the SDK does by default and this module undoes (see the API reference):
- ``CommonRequest`` speaks plain http: the endpoint is always given with its scheme
  (https unless configured for a loopback emulator);
- with ALIYUN_ACCESS_KEY_ID/SECRET in the environment the SDK silently signs with them when it
  is handed a credential object: the key pair is passed to ``AcsClient`` directly (which the SDK
  honours before the environment) and the STS token is added as the ``SecurityToken`` parameter,
  exactly where the SDK's STS signer would put it;
- no retries for IMS: the SDK's hidden retry is off and throttling, 5xx, timeouts and
  connection errors are retried here with exponential backoff and jitter, bounded in count and
  in total time;
- secrets in logs and errors: the SDK's loggers are silenced and every error message that
  leaves this module is stripped of query strings and registered secrets;
- a malformed ``SignatureDoesNotMatch`` makes the SDK raise ``IndexError``: caught here.

What a run imports, and when (a cold Function Compute start pays for every import): the SDK
when the first client is made (sdk.py), tenacity only once a first try has failed with a
retryable error. The settings' Get and Set are ims.py's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .credentials import Credentials
from .errors import GuardError
from .logs import silence_sdk_loggers
from .scrub import api_message, connection_problem
from .sdk import sdk, thread_acs_client

if TYPE_CHECKING:
    from aliyunsdkcore.client import AcsClient
    from tenacity import RetryCallState

RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "Throttling.Concurrent",
        "ServiceUnavailable",
        "InternalError",
        "SDK.HttpError",
        "SDK.TimeoutError",
        "SDK.UnknownServerError",
    }
)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# No attempt starts with less time than this left: it could not even connect.
MIN_ATTEMPT_SECONDS = 1.0
T = TypeVar("T")


class ApiError(GuardError):
    """An API call that failed: the service's code, message, HTTP status and request id."""

    def __init__(
        self,
        action: str,
        code: str,
        message: str,
        http_status: int | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.action = action
        self.code = code
        self.message = api_message(message)
        self.http_status = http_status
        self.request_id = request_id
        self.attempts = attempts
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.action} failed: {self.code}: {self.message}"
        details = []
        if self.http_status:
            details.append(f"HTTP {self.http_status}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        if self.attempts > 1:
            details.append(f"after {self.attempts} attempts")
        return f"{text} ({', '.join(details)})" if details else text

    @property
    def retryable(self) -> bool:
        if self.code.startswith(
            (
                "InvalidParameter",
                "MissingParameter",
                "NoPermission",
                "Forbidden",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "InvalidSecurityToken",
                "EntityNotExist",
            )
        ):
            return False
        return self.code in RETRYABLE_CODES or (self.http_status or 0) in RETRYABLE_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "ApiError",
            "action": self.action,
            "code": self.code,
            "message": self.message,
            "http_status": self.http_status,
            "request_id": self.request_id,
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one call: at most ``attempts`` tries within ``total_seconds``, waits and
    the tries' own timeouts included (a try's timeouts are cut to the time left, and no retry
    starts that could not get ``MIN_ATTEMPT_SECONDS``)."""

    attempts: int = 5
    total_seconds: float = 20.0
    initial_wait: float = 0.2
    max_wait: float = 4.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


@dataclass
class CallLog:
    """What a client did: for results, logs and the benchmark. Safe to share between threads."""

    calls: int = 0
    request_ids: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_call(self) -> None:
        with self._lock:
            self.calls += 1


class RpcClient:
    """Signed RPC calls to one endpoint and API version, with retries and clean errors."""

    def __init__(
        self,
        endpoint: str,
        version: str,
        credentials: Credentials,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: int = 5,
        read_timeout: int = 10,
        region_id: str = "cn-hangzhou",
        time_budget: float | None = None,
        deadline: float | None = None,
    ) -> None:
        """``time_budget``: seconds every call of this client together may take (one
        invocation's share of the function timeout); ``deadline``: the same as a point on
        ``retry.clock``, shared by many clients (an organisation-wide run); None: only each
        call's own bound."""
        if "://" not in endpoint:
            raise ValueError(f"endpoint needs a scheme (https://...), got {endpoint!r}")
        scheme, _, rest = endpoint.partition("://")  # the SDK compares 'https://' case-sensitively
        self.scheme, self.endpoint = scheme.lower(), f"{scheme.lower()}://{rest.rstrip('/')}"
        self.version = version
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.log = CallLog()
        self.timeouts = (float(connect_timeout), float(read_timeout))
        ends = [d for d in (deadline,) if d is not None]
        if time_budget is not None:
            ends.append(self.retry.clock() + time_budget)
        self.deadline = min(ends) if ends else None
        silence_sdk_loggers()
        parts = sdk()
        self._region_id = region_id
        self._sdk_timeouts = (connect_timeout, read_timeout)
        # The key pair goes to the SDK's own signer directly: the SDK then never consults its
        # ALIYUN_* environment variables (it does only when building a signer from nothing).
        self._signer = parts["AccessKeySigner"](
            parts["AccessKeyCredential"](credentials.access_key_id, credentials.access_key_secret)
        )

    @property
    def _acs(self) -> AcsClient:
        """The calling thread's SDK client."""
        return thread_acs_client(self._region_id, *self._sdk_timeouts)

    def call(
        self,
        action: str,
        params: Mapping[str, str] | Callable[[int], Mapping[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One logical call: retried on transient failures, ApiError when it finally fails.
        ``params`` may be a function of the try's number (1, 2, ...), asked before each try:
        a write retried after a wait can be planned again on a fresh read."""
        tries = 0

        def one_try(left: float | None) -> dict[str, Any]:
            nonlocal tries
            tries += 1
            sent = params(tries) if callable(params) else params
            return self._call_once(action, sent or {}, left)

        return with_retries(self.retry, action, one_try, deadline=self.deadline)

    def _call_once(
        self, action: str, params: Mapping[str, str], seconds_left: float | None = None
    ) -> dict[str, Any]:
        parts = sdk()
        request = parts["CommonRequest"](
            domain=self.endpoint, version=self.version, action_name=action
        )
        request.set_method("POST")
        if seconds_left is not None:  # this try may not outlast the call's time budget
            connect = min(self.timeouts[0], seconds_left / 2)
            request.set_connect_timeout(connect)
            request.set_read_timeout(min(self.timeouts[1], max(seconds_left - connect, 0.5)))
        request.set_protocol_type(self.scheme)
        for key, value in params.items():
            if value is None:  # the SDK would send the text "None"
                continue
            request.add_query_param(key, value)
        if self.credentials.security_token:
            request.add_query_param("SecurityToken", self.credentials.security_token)
        self.log.count_call()
        acs = self._acs
        # This thread's client signs with this client's key: set on every call, since other
        # RpcClients of the thread (other accounts) share it; no other thread uses it.
        acs._signer = self._signer
        try:
            body = acs.do_action_with_exception(request)
        except parts["ServerException"] as exc:
            if exc.get_request_id():
                self.log.request_ids.append(exc.get_request_id())
            raise ApiError(
                action,
                exc.get_error_code() or "UnknownError",
                exc.get_error_msg() or "",
                exc.get_http_status(),
                exc.get_request_id(),
            ) from None
        except parts["ClientException"] as exc:
            code = exc.get_error_code() or "SDK.ClientError"
            message = exc.get_error_msg() or ""
            if code in ("SDK.HttpError", "SDK.TimeoutError"):
                message = connection_problem(message, self.endpoint)
            raise ApiError(action, code, message) from None
        except IndexError:
            # aliyunsdkcore 2.16 splits a SignatureDoesNotMatch message on ':' unguarded.
            raise ApiError(
                action,
                "SignatureDoesNotMatch",
                "the request signature was rejected (check the access key secret)",
                400,
            ) from None
        except OSError as exc:
            raise ApiError(
                action, "SDK.HttpError", connection_problem(str(exc), self.endpoint)
            ) from None
        try:
            document = json.loads(body)
        except (ValueError, TypeError):
            raise ApiError(action, "InvalidResponse", "the response is not JSON") from None
        if not isinstance(document, dict):
            raise ApiError(action, "InvalidResponse", "the response is not a JSON object")
        request_id = document.get("RequestId")
        if isinstance(request_id, str):
            self.log.request_ids.append(request_id)
        return document


def with_retries(
    policy: RetryPolicy,
    action: str,
    attempt: Callable[[float], T],
    *,
    deadline: float | None = None,
) -> T:
    """Run ``attempt`` (given the seconds left for that try) until it succeeds, fails for good,
    or the retries or the time run out; the last ApiError says how many tries it took.

    Bounded twice: ``policy.total_seconds`` for this call and ``deadline`` (a clock value) for
    the invocation; no retry starts with less than MIN_ATTEMPT_SECONDS left. The first try runs
    without the retry machinery, which is imported only when a retry may be due.
    """
    attempts = 0
    clock = policy.clock
    ends = clock() + policy.total_seconds
    if deadline is not None:
        ends = min(ends, deadline)

    def one_try() -> T:
        nonlocal attempts
        left = ends - clock()
        if attempts == 0 and left < MIN_ATTEMPT_SECONDS:
            raise ApiError(
                action,
                "Guard.TimeBudgetSpent",
                "not attempted: the invocation's time budget for API calls is "
                "spent (slow or failing calls before it)",
            )
        attempts += 1
        return attempt(max(left, MIN_ATTEMPT_SECONDS))

    try:
        try:
            return one_try()
        except ApiError as exc:
            if not exc.retryable or policy.attempts < 2:
                raise
            first_failure: ApiError | None = exc
        return _retry(policy, ends, first_failure, one_try)
    except ApiError as exc:
        exc.attempts = attempts
        exc.args = (exc._describe(),)
        # The SDK's exception stays chained (if suppressed) otherwise, and its message
        # carries the signed URL: SecurityToken included.
        exc.__context__ = None
        raise


def _retry(policy: RetryPolicy, ends: float, failure: ApiError, one_try: Callable[[], T]) -> T:
    """The tries after a first retryable failure: tenacity's loop, whose first attempt replays
    that failure, so waits, stops and logs are what they would be had it run from the start."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    clock = policy.clock
    pending: list[ApiError] = [failure]

    def replay_then_try() -> T:
        if pending:
            raise pending.pop()
        return one_try()

    def out_of_time(state: RetryCallState) -> bool:
        return ends - clock() - state.upcoming_sleep < MIN_ATTEMPT_SECONDS

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts) | out_of_time,
        wait=wait_exponential_jitter(
            multiplier=policy.initial_wait,
            max=policy.max_wait,
            jitter=policy.initial_wait,
        ),
        retry=retry_if_exception(lambda exc: isinstance(exc, ApiError) and exc.retryable),
        sleep=policy.sleep,
        reraise=True,
        before_sleep=_log_retry,
    )
    return retrying(replay_then_try)


def _log_retry(state: RetryCallState) -> None:
    from .logs import event  # late: keeps the import graph flat

    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ApiError):
        import logging

        event(
            logging.WARNING,
            "retrying API call",
            action=exc.action,
            code=exc.code,
            http_status=exc.http_status,
            api_request_id=exc.request_id,  # request_id is the invocation's
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 3),
        )


class RpcService:
    """A client of one API of one endpoint: its calls go through one RpcClient, whose call log
    the run's report counts. Subclasses name the API ``VERSION`` and add its actions."""

    VERSION = ""

    def __init__(self, endpoint: str, credentials: Credentials, **kwargs: Any) -> None:
        self.rpc = RpcClient(endpoint, self.VERSION, credentials, **kwargs)

    @property
    def log(self) -> CallLog:
        return self.rpc.log

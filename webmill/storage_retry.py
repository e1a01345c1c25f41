"""Retries of object-store requests: exponential backoff with full jitter, bounded attempts.

Many workers starting at once can make one bucket throttle (S3 answers ``503 SlowDown``, and
now and then ``500 InternalError`` or a reset connection). :class:`webmill.storage.Storage`
runs each *idempotent* request on a non-local filesystem (reads, listings, ``exists``, and the
single ``put`` that publishes a whole object) through :func:`call_with_retries`; local disk is
never retried (its errors are not transient).

Rule (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015; AWS's S3 guidance for
``SlowDown``): wait ``uniform(0, min(max_wait_s, backoff_s * 2**i))`` before retry ``i + 1``,
so retrying workers spread out instead of returning together. s3fs (5 tries, fixed 1.7x steps)
and botocore (its own retry mode) retry some errors first; these retries sit on top, per whole
operation, so a throttled bucket gets minutes, not seconds, to recover before a file fails.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from typing import Any, Callable

log = logging.getLogger("webmill.storage")

MAX_ATTEMPTS = 6  # tries per operation (1 + 5 retries); [storage] max_attempts
BACKOFF_S = 0.5  # first wait ceiling; doubles each retry; [storage] backoff_s
MAX_WAIT_S = 30.0  # ceiling of one wait

# errnos s3fs gives S3 errors (s3fs/errors.py): SlowDown / ServiceUnavailable / 503 → EBUSY,
# InternalError / 500 → EREMOTEIO; the rest are the OS's own transient network errors
_TRANSIENT_ERRNOS = {errno.EBUSY, getattr(errno, "EREMOTEIO", 121), errno.ETIMEDOUT, errno.ECONNRESET,
                     errno.ECONNABORTED, errno.EAGAIN, errno.EPIPE}
# S3 error codes (botocore ClientError before s3fs translates it) worth another try
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "500", "502", "503", "504"}
# exception class names of the HTTP stacks under fsspec filesystems (botocore, aiohttp, fsspec)
_TRANSIENT_NAMES = {"EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                    "ConnectTimeoutError", "FSTimeoutError", "ClientPayloadError", "ServerDisconnectedError",
                    "ClientOSError", "IncompleteRead", "ResponseStreamingError", "ProtocolError"}
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


class ObjectStoreError(OSError):
    """An object-store operation still failed after the bounded retries (``errno`` of the last
    error; ``__cause__`` is that error)."""


def is_transient(e: BaseException) -> bool:
    """True for errors a later retry may not see: throttling (``SlowDown``, 503), server errors
    (500), timeouts and reset connections. Missing objects and denied access are permanent."""
    if isinstance(e, _PERMANENT):
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
        return True
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) if hasattr(e, "response") else ""
    if code in _TRANSIENT_CODES:
        return True
    return any(c.__name__ in _TRANSIENT_NAMES for c in type(e).__mro__)


def call_with_retries(fn: Callable[[], Any], what: str, max_attempts: int = MAX_ATTEMPTS,
                      backoff_s: float = BACKOFF_S, sleep: Callable[[float], None] = time.sleep) -> Any:
    """``fn()``, retried while it raises a transient error (:func:`is_transient`).

    Args:
        fn: an idempotent operation (safe to repeat after a failure).
        what: the operation and object for messages, e.g. ``"write s3://b/out/x.parquet"``.
        max_attempts: tries in all (>= 1).
        backoff_s: ceiling of the first wait in seconds; doubles per retry (full jitter).

    Raises:
        ObjectStoreError: still transient after ``max_attempts`` tries (names ``what``).
        Exception: a permanent error, re-raised at once as it is.
    """
    attempts = max(1, int(max_attempts))
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - classified just below
            if not is_transient(e):
                raise
            if i + 1 == attempts:
                raise ObjectStoreError(
                    getattr(e, "errno", None) or errno.EIO,
                    f"{what}: gave up after {attempts} attempts; last error: {type(e).__name__}: {e} "
                    "(the object store is throttling or unavailable: rerun later, or raise "
                    "[storage] max_attempts / backoff_s in the config)") from e
            wait = random.uniform(0, min(MAX_WAIT_S, backoff_s * 2**i))
            log.warning("%s: %s: %s; retry %d/%d in %.2f s", what, type(e).__name__, e, i + 1,
                        attempts - 1, wait)
            sleep(wait)
    raise AssertionError("unreachable")

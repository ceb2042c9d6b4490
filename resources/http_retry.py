"""Retries for the remote inference backends: one 503, 429 or timeout must not cost a whole evaluation.

Bounded exponential backoff with full jitter (a uniform wait between 0 and min(max delay, base * 2^(n-1))), at
least as long as the server's `Retry-After` (seconds or an HTTP-date). 408, 429, 5xx, timeouts and connection
errors are retried; any other 4xx is a mistake in the request and fails at once. When the attempts run out the
error names the URL, the last status and the number of attempts. The loop is a dozen lines, so it is written
here rather than pulling in a retry library the project does not otherwise declare; sleep, clock and random
source are parameters so tests run instantly.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

T = TypeVar("T")
RETRIED_STATUSES = frozenset({408, 429})  # plus every 5xx


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_delay_s: float = 60.0  # the longest single wait, the server's Retry-After included
    base_delay_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_delay_s < 0 or self.base_delay_s < 0:
            raise ValueError(f"RetryPolicy needs max_attempts >= 1 and non-negative delays, got {self}")


@dataclass(frozen=True)
class Transient:
    """Why an attempt failed in a way worth repeating, and how long the server asked us to wait."""

    reason: str  # "HTTP 503 Service Unavailable", "timeout", "connection refused", ...
    retry_after_s: float | None = None
    detail: str = ""


class RetriesExhausted(RuntimeError):
    def __init__(self, target: str, last: Transient, attempts: int, why: str):
        self.target, self.last, self.attempts = target, last, attempts
        detail = f": {last.detail}" if last.detail else ""
        super().__init__(f"{target}: {last.reason}{detail} ({why} after {attempts} attempt"
                         f"{'s' if attempts != 1 else ''})")


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A `Retry-After` header as seconds from `now` (epoch seconds): delay-seconds or an HTTP-date; None if
    absent or unreadable (the backoff alone decides then)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(attempt: int, policy: RetryPolicy, retry_after_s: float | None, rand: Callable[[], float]) -> float:
    """The wait after failed attempt `attempt` (1-based): full jitter under the capped exponential ceiling,
    never shorter than the server's Retry-After. `rand` returns a float in [0, 1)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    return max(rand() * ceiling, retry_after_s or 0.0)


def call_with_retries(attempt_fn: Callable[[], T], *, target: str, policy: RetryPolicy,
                      transient: Callable[[BaseException], Transient | None],
                      on_retry: Callable[[str, int, float, Transient], None] | None = None,
                      sleep: Callable[[float], None] = time.sleep, rand: Callable[[], float] = random.random) -> T:
    """`attempt_fn()` until it succeeds, fails for good (`transient` says None: re-raised as is) or the policy
    runs out (`RetriesExhausted`, chained to the last error). `on_retry(target, attempt, delay, why)` runs
    before each wait."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return attempt_fn()
        except Exception as error:
            why = transient(error)
            if why is None:
                raise
            if attempt >= policy.max_attempts:
                raise RetriesExhausted(target, why, attempt, "gave up") from error
            if why.retry_after_s is not None and why.retry_after_s > policy.max_delay_s:
                raise RetriesExhausted(
                    target, why, attempt, f"the server asked to retry after {why.retry_after_s:.0f} s, more than "
                    f"max_retry_delay_s={policy.max_delay_s:g}; raise it or run again later") from error
            delay = retry_delay(attempt, policy, why.retry_after_s, rand)
            if on_retry is not None:
                on_retry(target, attempt, delay, why)
            sleep(delay)


class HTTPStatusError(RuntimeError):
    """An HTTP error status, with the server's Retry-After header and the start of its body."""

    def __init__(self, url: str, status: int, reason: str, detail: str, retry_after: str | None):
        super().__init__(f"{url}: HTTP {status} {reason}: {detail}")
        self.url, self.status, self.reason, self.detail, self.retry_after = url, status, reason, detail, retry_after


def transient_http_error(error: BaseException, now: Callable[[], float] = time.time) -> Transient | None:
    """Classify one urllib attempt's failure: 408/429/5xx, timeouts, refused or dropped connections and failed
    name lookups are transient; TLS errors, bad URLs and other statuses are not."""
    if isinstance(error, HTTPStatusError):
        if error.status in RETRIED_STATUSES or error.status >= 500:
            return Transient(f"HTTP {error.status} {error.reason}".rstrip(), retry_after_seconds(error.retry_after,
                                                                                                 now()), error.detail)
        return None
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return Transient("timeout", detail=str(reason) or "no answer in time")
    if isinstance(reason, ConnectionError | http.client.HTTPException | socket.gaierror):
        return Transient("server not reachable", detail=f"{type(reason).__name__}: {reason}; is it running?")
    return None


def request_json(url: str, payload: dict | None, *, headers: dict[str, str], timeout_s: float, policy: RetryPolicy,
                 on_retry: Callable[[str, int, float, Transient], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time) -> dict:
    """POST `payload` (GET when None) and parse the JSON answer, retrying transient failures under `policy`.
    Raises HTTPStatusError (a status not worth retrying), RetriesExhausted, or ValueError (not JSON)."""
    data = json.dumps(payload).encode("utf-8") if payload is not None else None

    def attempt() -> bytes:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:500]
            raise HTTPStatusError(url, e.code, e.reason or "", detail, e.headers.get("Retry-After")) from None

    body = call_with_retries(attempt, target=url, policy=policy, on_retry=on_retry, sleep=sleep,
                             transient=lambda e: transient_http_error(e, now))
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{url}: the answer is not JSON ({e})") from None


def transient_google_error(error: BaseException, now: Callable[[], float] = time.time) -> Transient | None:
    """Classify one Vertex SDK call's failure (google-api-core errors over REST or gRPC, requests' transport
    errors): the same statuses as over plain HTTP are transient. The SDK is imported only when asked."""
    import requests
    from google.api_core import exceptions as gexc

    if isinstance(error, gexc.GoogleAPICallError):
        status = error.code if isinstance(error.code, int) else None
        if status is None or not (status in RETRIED_STATUSES or status >= 500):
            return None
        headers = getattr(error.response, "headers", None) or {}
        return Transient(f"HTTP {status} {type(error).__name__}", retry_after_seconds(headers.get("Retry-After"), now()),
                         error.message or "")
    if isinstance(error, requests.exceptions.Timeout):
        return Transient("timeout", detail=str(error))
    if isinstance(error, requests.exceptions.ConnectionError):
        return Transient("server not reachable", detail=f"{type(error).__name__}: {error}")
    return transient_http_error(error, now)

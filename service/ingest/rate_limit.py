"""Rate limits on the POSTs (RATE_LIMIT_RPS, RATE_LIMIT_BURST): a token bucket per device
token, per API key, or per client address for a request with neither; past it, 429 with
Retry-After. GETs (health, readiness, metrics, the document) are not limited.

NOTE: the buckets live in each gunicorn worker (no shared state, no lock, no I/O on the
request path), so with API_WORKERS=N a client spread over N connections can reach up to N
times the rate; one keep-alive connection stays on one worker. A batch is one request.
Buckets are keyed by the SHA-256 of the credential, and never logged or exported.
"""

from __future__ import annotations

import hashlib
import math
import time

import falcon
import falcon.asgi

_MAX_BUCKETS = 100_000  # NOTE: bounds the memory a spray of client addresses can take


class RateLimited(falcon.HTTPTooManyRequests):
    """429, and when a request would be let through again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            title="Too Many Requests",
            description=f"rate limit exceeded (RATE_LIMIT_RPS); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


class TokenBuckets:
    """`rate` requests a second, bursts of `burst`, per key."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[bytes, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: bytes) -> float:
        """0 when the request may go; else the seconds until it could."""
        now = self.clock()
        tokens, when = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget the buckets that are full again (they would start full anyway)."""
        full = [k for k, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:  # NOTE: still full: forget the oldest half
            for key in list(self._buckets)[: _MAX_BUCKETS // 2]:
                del self._buckets[key]


def identity(req: falcon.asgi.Request) -> bytes:
    """Who a request counts against: its device token, its API key, else its address."""
    token = getattr(req.context, "identity", None)
    if token is not None:
        return hashlib.sha256(token).digest()
    key = req.get_header("X-API-Key")
    if key:
        return hashlib.sha256(b"key:" + key.encode()).digest()
    return b"addr:" + (req.remote_addr or "").encode()


class RateLimitMiddleware:
    """Runs after authentication, so a request counts against the credential it proved."""

    def __init__(self, rate: float, burst: int) -> None:
        self.buckets = TokenBuckets(rate, burst or max(1, math.ceil(rate)))

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.method != "POST":
            return
        wait = self.buckets.take(identity(req))
        if wait:
            raise RateLimited(max(1, math.ceil(wait)))

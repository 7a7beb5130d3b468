"""The webhook deliverer: sends the store's outbox (store/outbox.py) to ALERT_WEBHOOK_URLS.

Runs as a thread of worker 0 (the slot that survives restarts, like retention), with its own
store connection, so exactly one deliverer runs while the pool runs (docs/contract.md,
"Webhook notifications"). Each step claims the due deliveries (a claim hides them for a
lease, so a deliverer that dies mid-send leaves them due again for the next one), POSTs
each body signed with ALERT_WEBHOOK_SECRET and records the outcome: 2xx -> sent; a
connection error, a timeout or any other status -> retried after an exponential backoff
with jitter capped at ALERT_WEBHOOK_BACKOFF_CAP_S, except 410 Gone -> failed at once;
still unsent ALERT_WEBHOOK_GIVE_UP_S after the event -> failed. Delivery is at
least once: a crash between the POST and the record of its success sends it again, with the
same Idempotency-Key.

HTTP is the standard library's urllib (no runtime dependency); redirects are not followed.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import NamedTuple

from consumer_pool import metrics
from pipeline.backoff import backoff
from pipeline.settings import PoolSettings
from pipeline.webhooks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature
from store import StoreError, Writer, open_writer
from store.outbox import Delivery

log = logging.getLogger(__name__)

CLAIM_LIMIT = 10
IDLE_POLL_S = 0.5
BACKOFF_BASE_S = 1.0
# 410 Gone: the receiver says the endpoint no longer exists. Any other answer that is not a
# 2xx may be a receiver being deployed or misconfigured for a while, so it is retried.
REFUSED_STATUSES = {410}
USER_AGENT = "sensor-pipeline-webhooks/1"


class Outcome(NamedTuple):
    ok: bool
    reason: str  # "" when ok; else connect, timeout, http_4xx, http_5xx, ...
    error: str  # what the deliveries' last_error says
    retry: bool  # a failure worth retrying


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: object, **__: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Outcome:
    """One POST; its outcome, never an exception."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(65_536)
            status = int(response.status)
    except urllib.error.HTTPError as e:
        status = e.code
    except TimeoutError as e:
        return Outcome(False, "timeout", f"timeout after {timeout_s:g}s: {e}", True)
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            return Outcome(False, "timeout", f"timeout after {timeout_s:g}s", True)
        return Outcome(False, "connect", f"cannot connect: {e.reason}", True)
    except OSError as e:  # reset mid-response, bad status line, ...
        return Outcome(False, "connect", f"connection failed: {e}", True)
    if 200 <= status < 300:
        return Outcome(True, "", "", False)
    retry = status not in REFUSED_STATUSES
    return Outcome(False, f"http_{status // 100}xx", f"HTTP {status}", retry)


class Notifier:
    """Delivers the outbox of one store until stopped."""

    def __init__(
        self,
        store: Writer,
        secret: str,
        timeout_s: float = 5.0,
        backoff_cap_s: float = 30.0,
        give_up_s: float = 86_400.0,
        clock: Callable[[], int] = time.time_ns,
        idle_poll_s: float = IDLE_POLL_S,
    ) -> None:
        self.store = store
        self.secret = secret
        self.timeout_s = timeout_s
        self.backoff_cap_s = backoff_cap_s
        self.give_up_ns = int(give_up_s * 1e9)
        self.clock = clock
        self.idle_poll_s = idle_poll_s
        # A claim is hidden this long: longer than sending all it claimed.
        self.lease_ns = int((CLAIM_LIMIT * timeout_s + 10) * 1e9)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = False

    @classmethod
    def of(cls, pool: PoolSettings) -> Notifier | None:
        """The deliverer the settings ask for (None: no URLs, or no store to hold an outbox)."""
        if not pool.alert_webhook_urls or pool.sink == "console":
            return None
        store = open_writer(pool.sink, pool.sqlite_path, pool.database_url)
        return cls(
            store,
            pool.alert_webhook_secret,
            timeout_s=pool.alert_webhook_timeout_ms / 1000,
            backoff_cap_s=pool.alert_webhook_backoff_cap_s,
            give_up_s=pool.alert_webhook_give_up_s,
        )

    # --- the thread ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="webhook-deliverer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the delivery in hand (an unrecorded one is sent again later)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)  # the thread closes its store (SQLite: its own thread's)
        else:
            self.store.close()

    def run(self) -> None:
        try:
            self._loop()
        finally:
            self.store.close()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self._ready:
                    self.store.setup()
                    self._ready = True
                    log.info("webhook deliverer started")
                busy = self.step()
                failures = 0
            except StoreError as e:
                failures += 1
                delay = backoff(failures, BACKOFF_BASE_S, self.backoff_cap_s)
                log.warning("webhook deliverer: store unavailable, retrying in %.1fs: %s", delay, e)
                self._stop.wait(delay)
                continue
            except Exception:  # thread boundary: a bug must not end deliveries for the worker's life
                failures += 1
                delay = backoff(failures, BACKOFF_BASE_S, self.backoff_cap_s)
                log.exception("webhook deliverer step failed; retrying in %.1fs", delay)
                self._stop.wait(delay)
                continue
            if not busy:
                self._stop.wait(self.idle_poll_s)

    # --- one step --------------------------------------------------------------------

    def step(self) -> int:
        """Send the deliveries due now; returns how many were attempted."""
        now = self.clock()
        pending = self.store.pending_deliveries()
        self.set_age(pending, now)
        if pending is None or pending[1] > now:
            return 0  # nothing due: no claim, so an idle deliverer takes no write lock
        claimed = self.store.claim_deliveries(now, self.lease_ns, CLAIM_LIMIT)
        for delivery in claimed:
            if self._stop.is_set():
                break  # the rest stay claimed until the lease ends, then are due again
            self.deliver(delivery)
        if claimed:
            self.set_age(self.store.pending_deliveries(), self.clock())
        return len(claimed)

    def deliver(self, d: Delivery) -> Outcome:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature(self.secret, d.body),
            IDEMPOTENCY_HEADER: d.event_id,
        }
        outcome = post(d.url, d.body, headers, self.timeout_s)
        now = self.clock()
        if outcome.ok:
            self.store.delivery_sent(d, now)
            metrics.WEBHOOK_SENT.inc()
            return outcome
        metrics.WEBHOOK_FAILED.labels(outcome.reason).inc()
        attempts = d.attempts + 1
        if not outcome.retry:
            log.warning("webhook %s refused event %s (%s); not retried", d.url, d.event_id, outcome.error)
            self.store.delivery_failed(d, outcome.error, now)
        elif now - d.created_ns >= self.give_up_ns:
            log.warning(
                "webhook %s: event %s given up after %d attempts (%s)", d.url, d.event_id, attempts, outcome.error
            )
            metrics.WEBHOOK_FAILED.labels("gave_up").inc()
            self.store.delivery_failed(d, f"gave up after {attempts} attempts: {outcome.error}", now)
        else:
            delay = backoff(attempts, BACKOFF_BASE_S, self.backoff_cap_s)
            log.info(
                "webhook %s: event %s attempt %d failed (%s), retry in %.1fs",
                d.url,
                d.event_id,
                attempts,
                outcome.error,
                delay,
            )
            self.store.delivery_retry(d, outcome.error, now + int(delay * 1e9))
        return outcome

    @staticmethod
    def set_age(pending: tuple[int, int] | None, now: int) -> None:
        metrics.WEBHOOK_OLDEST_PENDING.set(0 if pending is None else max(now - pending[0], 0) / 1e9)

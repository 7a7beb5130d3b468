"""Per-device tokens (DEVICE_TOKENS_FILE): each token may write only the sensors it lists.

The file, one token a line (`#` starts a comment, blank lines are skipped):

    <token> <sensor> [<sensor> ...]      # a sensor is an exact id, or a prefix ending in `*`

A client sends `Authorization: Bearer <token>`. A POST then needs a known device token or a
known X-API-Key (API_KEYS, which may write every sensor), else 401; a reading for a sensor
its token does not list gets 403, and nothing of that request is produced.

NOTE: tokens are kept only as SHA-256 digests and looked up by the digest of what the client
sent. The lookup's time depends on the digest (how many of its leading bytes match a stored
one), which a client cannot steer towards a token (SHA-256 is preimage resistant), so it
reveals nothing of how much of a token was guessed: the constant-time property without
comparing against every token (hmac.compare_digest per token would cost O(tokens) a
request). No token, digest or line of the file is ever logged or put in a metric (a bad
line is reported by its number).

The file is re-read when it changes (its mtime, size or inode, checked at most once a second)
and whenever gunicorn's master gets SIGHUP (it replaces its workers, which read it at start).
A file that no longer parses keeps the tokens that were loaded, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import falcon
import falcon.asgi

from pipeline.reading import Reading

log = logging.getLogger(__name__)

_CHECK_EVERY_S = 1.0


class TokenFileError(ValueError):
    """DEVICE_TOKENS_FILE cannot be read or has a line that does not parse."""


@dataclass(frozen=True)
class Grant:
    """The sensors one token may write."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    def permits(self, sensor_id: str) -> bool:
        return sensor_id in self.exact or sensor_id.startswith(self.prefixes)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def parse(text: str) -> dict[bytes, Grant]:
    """Digest -> Grant; raises TokenFileError naming the line (never its content)."""
    grants: dict[bytes, Grant] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) < 2:
            raise TokenFileError(f"line {number}: a token needs at least one sensor id or prefix")
        token, sensors = words[0], words[1:]
        if any(s == "*" or "*" in s[:-1] for s in sensors):
            raise TokenFileError(f"line {number}: `*` may only end a prefix, as in `lab-*`")
        digest = _digest(token.encode())
        if digest in grants:
            raise TokenFileError(f"line {number}: a token listed twice")
        exact = frozenset(s for s in sensors if not s.endswith("*"))
        grants[digest] = Grant(exact, tuple(s[:-1] for s in sensors if s.endswith("*")))
    return grants


class DeviceTokens:
    """The token file, re-read when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = self._stat()
        self._grants = self._read()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise TokenFileError(f"cannot read DEVICE_TOKENS_FILE {self.path}: {e.strerror}") from None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> dict[bytes, Grant]:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenFileError(f"cannot read DEVICE_TOKENS_FILE {self.path}: {e}") from None
        grants = parse(text)
        log.info("device tokens: %d loaded from %s", len(grants), self.path)
        return grants

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _CHECK_EVERY_S:
            return
        self._checked = now
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            self._stamp = stamp  # NOTE: a bad file is reported once, not every second
            self._grants = self._read()
        except TokenFileError as e:
            log.warning("device tokens: keeping the %d loaded: %s", len(self._grants), e)

    def grant(self, token: bytes) -> Grant | None:
        """The token's grant, or None when it is unknown. See the NOTE above on timing."""
        self._refresh()
        return self._grants.get(_digest(token))


class CredentialsMiddleware:
    """POSTs need a known X-API-Key (every sensor) or a known device token (its sensors).

    Sets `req.context.grant` (None: an API key, no restriction) and, for a token,
    `req.context.identity` (the rate limiter's key; never logged)."""

    def __init__(self, keys: frozenset[str], tokens: DeviceTokens) -> None:
        # NOTE: imported here: `python -m service` parses the token file at start, before the
        # metrics folder exists, and service.server.middleware imports the metrics.
        from service.server.middleware import ApiKeyMiddleware

        self.keys = ApiKeyMiddleware(keys) if keys else None
        self.tokens = tokens

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.grant = None
        if req.method != "POST":
            return
        auth = req.get_header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            grant = self.tokens.grant(token.strip().encode())
            if grant is not None:
                req.context.grant = grant
                req.context.identity = b"token:" + token.strip().encode()
                return
        elif self.keys is not None and req.get_header("X-API-Key"):
            await self.keys.process_request(req, resp)  # 401 unless the key is known
            return
        raise falcon.HTTPUnauthorized(
            title="Unauthorized",
            description="missing or unknown device token (Authorization: Bearer) or API key (X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def check(req: falcon.asgi.Request, readings: Sequence[Reading]) -> None:
    """403 when the request's device token may not write one of these sensors."""
    grant: Grant | None = getattr(req.context, "grant", None)
    if grant is None:
        return
    for index, reading in enumerate(readings):
        if not grant.permits(reading.sensor_id):
            path = "$.sensor_id" if len(readings) == 1 and req.path == "/sensor" else f"$[{index}].sensor_id"
            raise Forbidden(f"this device token may not write sensor {reading.sensor_id}", path)


class Forbidden(falcon.HTTPForbidden):
    def __init__(self, message: str, path: str) -> None:
        super().__init__(title="Forbidden", description=message)
        self.path = path

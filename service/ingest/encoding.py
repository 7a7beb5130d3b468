"""Compressed request bodies: `Content-Encoding: gzip`, `deflate` or `zstd` (and `identity`).

The limit is MAX_BODY_BYTES on the compressed body (as read) and again on the decompressed
one: decompression stops one byte past the limit, so a small body that would inflate to
gigabytes (a "zip bomb") costs at most MAX_BODY_BYTES + 1 bytes of memory before its 413.

gzip and deflate come with Python (zlib); zstd is Python 3.14's `compression.zstd`, from the
`backports.zstd` package before 3.14. Both decompressors take a `max_length` that bounds the
output, and say whether the stream ended (`eof`): a truncated body is a 400, not a shorter
batch. Concatenated gzip members and zstd frames are all read. `deflate` is the zlib format
(RFC 9110); a raw deflate stream, which some clients send, is accepted too.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Any

import falcon

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

SUPPORTED = ("gzip", "deflate", "zstd", "identity")
_GZIP = zlib.MAX_WBITS | 16
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS


class UnsupportedEncoding(falcon.HTTPUnsupportedMediaType):
    """415 naming what is supported."""

    def __init__(self, given: str) -> None:
        super().__init__(
            description=f"Content-Encoding must be one of {', '.join(SUPPORTED)}; got {given}",
            headers={"Accept-Encoding": ", ".join(SUPPORTED)},
        )


class BadCompression(falcon.HTTPBadRequest):
    """400: the body does not decompress with the encoding it names."""

    def __init__(self, encoding: str, detail: object) -> None:
        super().__init__(description=f"the body is not valid {encoding}: {detail}")


def coding(header: str | None) -> str:
    """The one content coding of a request (lower-cased); raises UnsupportedEncoding."""
    name = (header or "identity").strip().lower() or "identity"
    if name not in SUPPORTED:
        raise UnsupportedEncoding(header or "")
    return name


def too_large(limit: int) -> falcon.HTTPContentTooLarge:
    return falcon.HTTPContentTooLarge(description=f"body is larger than {limit} bytes")


def decompress(body: bytes, name: str, limit: int) -> bytes:
    """The decompressed body; 413 once it passes `limit` (without inflating the rest), 400
    when it is not valid `name` data."""
    if name == "identity":
        return body
    new: Callable[[], Any]
    error: type[Exception]
    if name == "zstd":
        new, error = zstd.ZstdDecompressor, zstd.ZstdError
    elif name == "gzip":
        new, error = (lambda: zlib.decompressobj(_GZIP)), zlib.error
    else:
        # NOTE: a zlib stream starts with a header whose 16-bit value is a multiple of 31.
        zlib_format = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
        new, error = (lambda: zlib.decompressobj(_ZLIB if zlib_format else _RAW)), zlib.error
    out = bytearray()
    data = body
    try:
        while data:
            stream = new()
            # NOTE: at most `limit + 1 - len(out)` bytes come out; when fewer do, the input was used up.
            out += stream.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise too_large(limit)
            if not stream.eof:
                raise BadCompression(name, "the stream ends early")
            data = stream.unused_data if name != "deflate" else b""  # the next gzip member or zstd frame
    except error as e:
        raise BadCompression(name, e) from None
    return bytes(out)

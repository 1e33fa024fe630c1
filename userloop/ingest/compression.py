"""Bounded decompression: a small gzip body must not become gigabytes in memory."""

from __future__ import annotations

import zlib

from userloop.errors import TooLarge, UserloopError


def gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress gzip or zlib data, refusing output past ``limit`` bytes."""
    d = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, auto-detected
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise UserloopError("bad_compression", f"body is not valid gzip: {exc}") from exc
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge("request_too_large", f"decompressed body is larger than {limit} bytes")
    return out

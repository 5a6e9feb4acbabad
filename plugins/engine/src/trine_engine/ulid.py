"""Run ids: ULIDs, 26 Crockford base32 characters (48-bit milliseconds + 80 random bits).

They sort by creation time, which is what ``list_runs`` pages by. Ids made within one millisecond
(or while the clock steps back) increment the previous random part, so ids from one engine are
strictly increasing.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 26
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_TIME_LIMIT = 1 << 48


def encode(value: int) -> str:
    """A 128-bit integer as 26 Crockford base32 characters (the first one carries 3 bits)."""
    chars = []
    for _ in range(LENGTH):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def floor(ms: int) -> str:
    """The smallest id of millisecond ``ms``: the ids made at ``ms`` or later sort at or after it.
    A time past what a ULID holds gives an id above every ULID."""
    return encode(min(ms, _TIME_LIMIT) << _RANDOM_BITS)


def timestamp_ms(ulid: str) -> int:
    """The millisecond part of ``ulid``."""
    value = 0
    for char in ulid:
        value = (value << 5) | ALPHABET.index(char)
    return value >> _RANDOM_BITS


class UlidGenerator:
    def __init__(self) -> None:
        self._last_ms = -1
        self._last_random = 0

    def new(self, now_ms: int) -> str:
        if not 0 <= now_ms < _TIME_LIMIT:
            raise ValueError(f"{now_ms} ms does not fit a ULID")
        if now_ms > self._last_ms:
            self._last_ms, self._last_random = now_ms, secrets.randbits(_RANDOM_BITS)
        else:
            self._last_random += 1
            if self._last_random == _RANDOM_LIMIT:  # 2**80 ids in one ms: borrow the next ms
                self._last_ms += 1
                self._last_random = secrets.randbits(_RANDOM_BITS)
        return encode((self._last_ms << _RANDOM_BITS) | self._last_random)

"""Unique ids for requests, reservations and ledger rows: 128 random bits as 32 hex characters.

They need uniqueness, not secrecy (none of them grants anything), so they come from a private
Mersenne Twister seeded from the OS, several times cheaper than ``uuid4`` (which reads
``os.urandom`` per call), leaving the global ``random`` state alone, and reseeded in every forked
worker so two workers never share a sequence.
"""

from __future__ import annotations

import os
import random

_generator = random.Random()
os.register_at_fork(after_in_child=_generator.seed)
_random_bits = _generator.getrandbits


def new_id() -> str:
    return _random_bits(128).to_bytes(16, "big").hex()


def new_id_bytes() -> bytes:
    return new_id().encode()

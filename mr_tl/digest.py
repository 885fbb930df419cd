"""Checksums: of files (sha256 for everything mr_tl records; MD5 only where Keras pins one), and of
multisets of lines (:class:`MultisetHash`), which map tasks can compute in pieces."""

import hashlib
from collections.abc import Iterable, Mapping
from os import PathLike
from typing import Self

LANES = 4            # 4 lanes of 32 bits: a 128-bit digest
_LANE_MOD = 1 << 32


def file_digest(path: str | PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of the file at ``path``, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


class MultisetHash:
    """An order-independent digest of a multiset of byte strings (e.g. the lines of a shard).

    Each item contributes the first 16 bytes of its sha256 as four little-endian
    32-bit numbers; the digest is their lane-wise sum modulo 2**32.  Any split of
    the items into parts (map tasks, input splits) gives partial sums that add
    up to the same digest, so tasks report them as four counters
    (:meth:`counters`): with fewer than 2**31 items per lane no counter can
    overflow a signed 64-bit integer.  It detects changed, missing, extra or
    duplicated items (not a reordering, which does not change what was packed).
    It is not meant to resist someone forging items on purpose.
    """

    COUNTER_NAMES = tuple("digest lane %d" % i for i in range(LANES))

    def __init__(self, lanes: Iterable[int] | None = None) -> None:
        self.lanes = [int(x) for x in lanes] if lanes is not None else [0] * LANES
        if len(self.lanes) != LANES:
            raise ValueError("a MultisetHash has %d lanes, found %d" % (LANES, len(self.lanes)))

    def add(self, item: bytes | str) -> Self:
        """Add one item (bytes; text is UTF-8 encoded)."""
        if isinstance(item, str):
            item = item.encode("utf-8")
        digest = hashlib.sha256(item).digest()
        for i in range(LANES):
            self.lanes[i] += int.from_bytes(digest[4 * i:4 * i + 4], "little")
        return self

    def add_sha256(self, digest: bytes) -> Self:
        """Add one item given by its sha256 digest (32 bytes): for an item hashed in pieces, e.g. a
        line written in chunks.  ``add_sha256(hashlib.sha256(item).digest())`` is ``add(item)``."""
        if len(digest) != 32:
            raise ValueError("a sha256 digest has 32 bytes, found %d" % len(digest))
        for i in range(LANES):
            self.lanes[i] += int.from_bytes(digest[4 * i:4 * i + 4], "little")
        return self

    def update(self, other: "MultisetHash") -> Self:
        """Add another (partial) hash's items."""
        for i in range(LANES):
            self.lanes[i] += other.lanes[i]
        return self

    def hexdigest(self) -> str:
        return "".join("%08x" % (x % _LANE_MOD) for x in self.lanes)

    def counters(self) -> dict[str, int]:
        """``{counter name: lane sum}``, to add to a job's counters (sums over tasks stay exact)."""
        return dict(zip(self.COUNTER_NAMES, self.lanes))

    @classmethod
    def from_counters(cls, counters: Mapping[str, int]) -> Self:
        """The hash whose partial sums a job reported with :meth:`counters` (missing lanes are 0)."""
        return cls([counters.get(name, 0) for name in cls.COUNTER_NAMES])

    @classmethod
    def from_hex(cls, text: str) -> Self:
        """The hash whose :meth:`hexdigest` is ``text``."""
        if len(text) != 8 * LANES:
            raise ValueError("a MultisetHash digest has %d hex digits, found %d" % (8 * LANES, len(text)))
        return cls([int(text[8 * i:8 * i + 8], 16) for i in range(LANES)])

    @classmethod
    def of(cls, items: Iterable[bytes | str]) -> Self:
        h = cls()
        for item in items:
            h.add(item)
        return h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MultisetHash) and self.hexdigest() == other.hexdigest()

    def __repr__(self) -> str:
        return "MultisetHash(%s)" % self.hexdigest()

"""Kafka's default partitioner in pure Python, so replay reproduces per-partition stream time.

Kafka (Java client and kafka-python) places a keyed record at
`(murmur2(key) & 0x7fffffff) % partitions` with the murmur2 variant of `Utils.murmur2`.
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import i64

# Compiled, the hash runs on machine words (i64: interpreted, a plain int): a 32-bit value
# times _M stays below 2**63, so no step overflows, and a masked result is the same in both
# builds. With `int`, each product (up to 2**63) spilled past the compiled build's small ints
# into heap integers: 1.2 us a journey key (docs/core.md, Performance).
_M: Final[i64] = 0x5BD1E995
_MASK: Final[i64] = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (seed 0x9747b28c), as a signed 32-bit int like Java's.

    Test vectors from Kafka's UtilsTest.testMurmur2:

    >>> murmur2(b"21"), murmur2(b"foobar"), murmur2(b"a-little-bit-long-string")
    (-973932308, -790332482, -985981536)
    >>> murmur2(b"a-little-bit-longer-string"), murmur2(b"abc")
    (-1486304829, 479470107)
    >>> murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")
    -58897971
    """
    length: i64 = len(data)
    h: i64 = (0x9747B28C ^ length) & _MASK
    end: i64 = length - length % 4
    i: i64 = 0
    while i < end:
        k: i64 = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
        i += 4
    rest: i64 = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return int(h - (1 << 32) if h & 0x80000000 else h)


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a UTF-8 key.

    >>> partition_for("foobar", 12), partition_for("c1", 1)
    (6, 0)
    """
    if partitions <= 1:
        return 0
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions

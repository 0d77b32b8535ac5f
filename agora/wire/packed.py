"""Two helpers for decoding the same shapes many times over: a JSON object kept in
its msgpack form until someone reads it, and a cache of parsed values by their bytes.

Both exist for agent re-registration after a failover, where tens of thousands of
agents report hundreds of thousands of tasks within seconds. Each task carries its
TaskInfo as the framework wrote it (labels, command, container...), which the master
only echoes back in state views: decoding it into dicts costs time and, worse, millions
of objects the garbage collector then walks on every full pass. And most tasks'
resources, most agents' attributes and every agent's copy of a framework's
FrameworkInfo are byte-for-byte the same as many others', so parsing them once each
is enough: the parsed values (Resources, Attributes, FrameworkInfo) are immutable and
safely shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from agora.wire.mesos_json import WireError

T = TypeVar("T")
_decode = msgspec.msgpack.Decoder().decode
_MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}  # fixmap, map 16, map 32


class PackedJson(Mapping[str, Any]):
    """A JSON object (a msgpack map) decoded on first read, then kept decoded."""

    __slots__ = ("packed", "_value")

    def __init__(self, packed: bytes) -> None:
        if not packed or packed[0] not in _MAP_MARKERS:
            raise WireError("expected a map")
        self.packed = packed
        self._value: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._value is None:
            value = _decode(self.packed)
            if not isinstance(value, dict):  # pragma: no cover - checked on creation
                raise WireError("expected a map")
            self._value = value
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def __repr__(self) -> str:
        return f"PackedJson({self._load()!r})"


class ParseCache(Generic[T]):
    """`parse(key)` remembered by `key` (encoded bytes or text). Bounded: when full it
    starts afresh, which costs a re-parse of what is still in use and nothing else. A
    key whose parse raises is not remembered."""

    def __init__(self, parse: Callable[[Any], T], limit: int = 4096) -> None:
        self._parse = parse
        self._limit = limit
        self._values: dict[Any, T] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, key: bytes | str) -> T:
        value = self._values.get(key)
        if value is not None:
            self.hits += 1
            return value
        value = self._parse(key)
        self.misses += 1
        if len(self._values) >= self._limit:
            self._values.clear()
        self._values[key] = value
        return value

    def __len__(self) -> int:
        return len(self._values)

"""The fetcher's plan: each CommandInfo.uris entry checked and turned into a FetchItem (where
it comes from, where it lands in the sandbox, whether and how it is unpacked, whether it may
be cached), and the cache's ledger (sizes, reservations, least-recently-used eviction).

Pure so that every refusal (a bad field, an unsupported scheme, an output_file escaping the
sandbox) is decided and worded in one place, before any byte moves (Mesos's fetcher, §9.3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class FetchPlanError(ValueError):
    """A URI entry the fetcher refuses; the message names the field and why."""


class Scheme(StrEnum):
    HTTP = "http"
    HTTPS = "https"
    FILE = "file"  # file:// URIs, absolute paths and paths under frameworks_home


class Extraction(StrEnum):
    TAR = "tar"  # any compression tarfile detects (gz, bz2, xz) or none
    GZIP = "gzip"  # one gzipped file, unpacked next to its archive without the suffix
    ZIP = "zip"


# Longest suffixes first: ".tar.gz" must win over ".gz".
ARCHIVE_SUFFIXES: tuple[tuple[str, Extraction], ...] = (
    (".tar.gz", Extraction.TAR),
    (".tar.bz2", Extraction.TAR),
    (".tar.xz", Extraction.TAR),
    (".tgz", Extraction.TAR),
    (".tbz2", Extraction.TAR),
    (".txz", Extraction.TAR),
    (".tar", Extraction.TAR),
    (".zip", Extraction.ZIP),
    (".gz", Extraction.GZIP),
)


@dataclass(frozen=True)
class FetchItem:
    uri: str  # as the framework wrote it: error messages name it
    scheme: Scheme
    location: str  # the URL for http(s); an absolute host path for FILE
    output_path: str  # relative to the sandbox, normalized, never escaping it
    executable: bool
    extraction: Extraction | None  # None: the file stays as fetched
    cache: bool

    @property
    def gunzipped_name(self) -> str:
        """Where a single gzipped file is unpacked: the sandbox root, without `.gz`."""
        return self.output_path.rsplit("/", 1)[-1][: -len(".gz")]


def archive_kind(name: str) -> Extraction | None:
    lowered = name.lower()
    for suffix, kind in ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix) and len(lowered) > len(suffix):
            return kind
    return None


def cache_key(user: str, uri: str) -> str:
    """The cache's name for (user, uri): a file name, whatever the URI holds."""
    return hashlib.sha256(f"{user}\0{uri}".encode()).hexdigest()


def plan_fetch(uris: Sequence[object], frameworks_home: str | None = None) -> list[FetchItem]:
    return [plan_uri(i, uri, frameworks_home) for i, uri in enumerate(uris)]


def plan_uri(index: int, uri: object, frameworks_home: str | None = None) -> FetchItem:
    what = f"uris[{index}]"
    if not isinstance(uri, Mapping):
        raise FetchPlanError(f"{what} must be an object with a 'value'")
    value = uri.get("value")
    if not isinstance(value, str) or not value.strip():
        raise FetchPlanError(f"{what}.value must be a non-empty string")
    if "\0" in value:
        raise FetchPlanError(f"{what}.value must not contain NUL")
    executable = _flag(uri, "executable", False, what)
    extract = _flag(uri, "extract", True, what)
    cache = _flag(uri, "cache", False, what)
    scheme, location = _locate(value, frameworks_home, what)
    output_file = uri.get("output_file")
    if output_file is None:
        name = _basename(location)
        if not name:
            raise FetchPlanError(f"{what}.value '{value}' names no file; set output_file")
        output_path = name
    else:
        output_path = _relative_path(output_file, f"{what}.output_file")
    extraction = None if executable or not extract else archive_kind(output_path)
    return FetchItem(value, scheme, location, output_path, executable, extraction, cache)


def _flag(uri: Mapping[str, object], name: str, default: bool, what: str) -> bool:
    value = uri.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FetchPlanError(f"{what}.{name} must be a boolean")
    return value


def _locate(value: str, frameworks_home: str | None, what: str) -> tuple[Scheme, str]:
    if "://" in value:
        scheme, rest = value.split("://", 1)
        scheme = scheme.lower()
        if scheme in ("http", "https"):
            if not rest or rest.startswith("/"):
                raise FetchPlanError(f"{what}.value '{value}' has no host")
            return Scheme(scheme), value
        if scheme == "file":
            host, slash, path = rest.partition("/")
            if host not in ("", "localhost") or not slash:
                raise FetchPlanError(f"{what}.value '{value}' must be file:///<absolute path>")
            return Scheme.FILE, _normalize_absolute("/" + path)
        raise FetchPlanError(f"{what}.value '{value}': unsupported scheme '{scheme}'")
    if value.startswith("/"):
        return Scheme.FILE, _normalize_absolute(value)
    if not frameworks_home:
        raise FetchPlanError(
            f"{what}.value '{value}' is a relative path and the agent has no --frameworks-home"
        )
    return Scheme.FILE, _normalize_absolute(frameworks_home.rstrip("/") + "/" + value)


def _basename(location: str) -> str:
    path = location.split("#", 1)[0].split("?", 1)[0]
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2]
    name = path.rsplit("/", 1)[-1]
    return "" if name in (".", "..") else name


def _normalize_absolute(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def _relative_path(value: object, what: str) -> str:
    """output_file: a relative path inside the sandbox (subdirectories allowed)."""
    if not isinstance(value, str) or not value:
        raise FetchPlanError(f"{what} must be a non-empty string")
    if "\0" in value:
        raise FetchPlanError(f"{what} must not contain NUL")
    if value.startswith("/"):
        raise FetchPlanError(f"{what} '{value}' must be relative to the sandbox")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FetchPlanError(f"{what} '{value}' must not leave the sandbox ('..')")
    if not parts or value.endswith("/"):
        raise FetchPlanError(f"{what} '{value}' must name a file")
    return "/".join(parts)


@dataclass
class CacheEntry:
    size: int
    last_use: int  # the ledger's own counter: deterministic LRU order
    ready: bool = False  # downloaded (before: space reserved for a download under way)
    pins: int = 0  # readers or the download using it now: never evicted while pinned


@dataclass
class CacheLedger:
    """The fetcher cache's accounting: what is stored or reserved, in bytes, and which
    entries to evict (least recently used, unpinned) to make room for a new one."""

    capacity_bytes: int
    entries: dict[str, CacheEntry] = field(default_factory=dict)
    _clock: int = 0

    @property
    def used_bytes(self) -> int:
        return sum(e.size for e in self.entries.values())

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def lookup(self, key: str) -> CacheEntry | None:
        """A ready entry, marked used now and pinned (the caller unpins it)."""
        entry = self.entries.get(key)
        if entry is None or not entry.ready:
            return None
        entry.last_use = self._tick()
        entry.pins += 1
        return entry

    def reserve(self, key: str, size: int) -> list[str] | None:
        """Reserve `size` bytes for `key` (pinned, not ready). Returns the keys to evict
        (already forgotten here: the caller deletes their files), or None if it cannot fit
        even after evicting every unpinned entry."""
        if size < 0 or key in self.entries:
            return None
        free = self.capacity_bytes - self.used_bytes
        victims: list[str] = []
        if size > free:
            candidates = sorted(
                (e.last_use, k) for k, e in self.entries.items() if e.pins == 0 and e.ready
            )
            for _, victim in candidates:
                if free >= size:
                    break
                free += self.entries[victim].size
                victims.append(victim)
            if free < size:
                return None
        for victim in victims:
            del self.entries[victim]
        self.entries[key] = CacheEntry(size, self._tick(), pins=1)
        return victims

    def commit(self, key: str, size: int) -> None:
        """The download finished with `size` bytes (it may differ from the reservation)."""
        entry = self.entries[key]
        entry.size, entry.ready = size, True

    def unpin(self, key: str) -> None:
        entry = self.entries.get(key)
        if entry is not None and entry.pins > 0:
            entry.pins -= 1

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

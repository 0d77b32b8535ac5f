"""The fetcher: a task's CommandInfo.uris brought into its sandbox before it starts (Mesos's
mesos-fetcher, §9.3), on the agent's event loop without blocking it: downloads stream with
aiohttp, file copies, extraction and chowns run in threads.

A task's URIs are fetched one after the other; tasks fetch concurrently. A failure raises
ContainerError naming the URI and the cause (the task ends TASK_FAILED, container launch
failed). A download that receives nothing for `fetcher_stall_timeout_s` is aborted.

The cache (`cache: true`, keyed by (user, uri)) holds whole files: the size must be known
first (Content-Length, stat) or the cache is bypassed; concurrent fetches of one key wait for
the first download; space is reserved and least-recently-used entries are evicted; a problem
with the cache itself falls back to a direct download; a hit touches no network, and a cached
archive is extracted straight from the cache (no copy of it lands in the sandbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import aiohttp

from agora.agent.containerizer.model import ContainerError
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.container.fetch import (
    CacheLedger,
    Extraction,
    FetchItem,
    FetchPlanError,
    Scheme,
    cache_key,
    plan_fetch,
)

log = logging.getLogger("agora.agent.fetcher")

CHUNK_BYTES = 256 * 1024


class FetchError(Exception):
    """The cause of one URI's failure (the caller adds which URI)."""


class CacheError(Exception):
    """The cache cannot serve this fetch: it falls back to a direct download."""


@dataclass
class FetcherStats:
    """Counters for metrics: cache hits/misses, bytes downloaded, what the cache holds."""

    cache_hits: int = 0
    cache_misses: int = 0
    cache_bypasses: int = 0  # cache asked for, but size unknown, too big or a cache problem
    cache_evictions: int = 0
    bytes_downloaded: int = 0
    cache_size_bytes: int = 0


class Fetcher:
    def __init__(self, options: ContainerizerOptions) -> None:
        self.options = options
        self.stats = FetcherStats()
        self.ledger = CacheLedger(max(0, options.fetcher_cache_size_bytes))
        self._downloads: dict[str, asyncio.Future[bool]] = {}  # key -> cached or not
        self._cache_ready = False
        self._cache_lock = asyncio.Lock()  # one emptying of the cache directory at a time

    @property
    def stall_timeout_s(self) -> float:
        return self.options.fetcher_stall_timeout_s

    async def fetch(
        self, uris: Sequence[Mapping[str, Any]], sandbox: str, uid: int | None, gid: int | None
    ) -> None:
        """Fetch every URI into `sandbox` in order; ContainerError at the first failure."""
        try:
            items = plan_fetch(uris, self.options.frameworks_home)
        except FetchPlanError as error:
            raise ContainerError(f"Invalid fetcher URI: {error}") from None
        os.makedirs(sandbox, exist_ok=True)
        async with self._session() as session:
            for item in items:
                try:
                    await self._fetch_one(session, item, sandbox, uid)
                except FetchError as error:
                    raise ContainerError(f"Failed to fetch '{item.uri}': {error}") from None
                except OSError as error:
                    raise ContainerError(
                        f"Failed to fetch '{item.uri}': {describe_os_error(error)}"
                    ) from None
        if uid is not None:
            await asyncio.to_thread(chown_tree, sandbox, uid, gid)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.stall_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            yield session

    async def _fetch_one(
        self, session: aiohttp.ClientSession, item: FetchItem, sandbox: str, uid: int | None
    ) -> None:
        if item.cache and self.ledger.capacity_bytes > 0:
            key = cache_key("" if uid is None else str(uid), item.uri)
            try:
                if await self._fetch_cached(session, item, key, sandbox):
                    return
            except CacheError as problem:
                log.warning(
                    "fetcher cache unusable for %s (%s): fetching directly", item.uri, problem
                )
            self.stats.cache_bypasses += 1
        async with self._open(session, item) as source:
            await self._deliver(source, item, sandbox)

    # ------------------------------------------------------------------ the cache

    async def _fetch_cached(
        self, session: aiohttp.ClientSession, item: FetchItem, key: str, sandbox: str
    ) -> bool:
        """Fetch through the cache; False if this fetch must bypass it."""
        while True:
            if self.ledger.lookup(key) is not None:
                self.stats.cache_hits += 1
                try:
                    await self._from_cache(item, key, sandbox)
                finally:
                    self.ledger.unpin(key)
                return True
            pending = self._downloads.get(key)
            if pending is None:
                break
            if not await asyncio.shield(pending):
                return False  # the first fetch could not cache it: neither can this one
        self.stats.cache_misses += 1
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._downloads[key] = done
        cached = False
        try:
            cached = await self._download_to_cache(session, item, key, sandbox)
        finally:
            del self._downloads[key]
            done.set_result(cached)
        if not cached:  # already delivered straight into the sandbox
            self.stats.cache_bypasses += 1
            return True
        if self.ledger.lookup(key) is None:
            raise CacheError("the entry vanished right after its download")
        try:
            await self._from_cache(item, key, sandbox)
        finally:
            self.ledger.unpin(key)
        return True

    async def _download_to_cache(
        self, session: aiohttp.ClientSession, item: FetchItem, key: str, sandbox: str
    ) -> bool:
        """Download into the cache under `key`. If its size is unknown or too big for the
        cache, the source already open is delivered straight into the sandbox instead
        (False). Fetch errors propagate; cache errors fall back."""
        async with self._open(session, item) as source:
            victims = None
            if source.size is not None:
                try:
                    await self._prepare_cache_dir()
                    victims = self.ledger.reserve(key, source.size)
                except CacheError as problem:
                    log.warning("fetcher cache unusable (%s): fetching directly", problem)
            if victims is None:
                await self._deliver(source, item, sandbox)
                return False
            self._evict(victims)
            path = self._cache_path(key)
            try:
                written = await source.save(path, limit=source.size)
            except BaseException:
                self.ledger.forget(key)
                self._remove(path)
                self.stats.cache_size_bytes = self.ledger.used_bytes
                raise
        self.ledger.commit(key, written)
        self.ledger.unpin(key)
        self.stats.cache_size_bytes = self.ledger.used_bytes
        return True

    async def _from_cache(self, item: FetchItem, key: str, sandbox: str) -> None:
        """Deliver a cached file: archives are extracted from the cache, others copied."""
        path = self._cache_path(key)
        if not os.path.isfile(path):
            self.ledger.forget(key)
            self.stats.cache_size_bytes = self.ledger.used_bytes
            raise CacheError(f"the cached file '{path}' is gone")
        if item.extraction is not None:
            await asyncio.to_thread(extract, path, item.extraction, sandbox, item.gunzipped_name)
            return
        target = sandbox_path(sandbox, item.output_path)
        await asyncio.to_thread(copy_file, path, target)
        await self._finish(item, target, sandbox)

    async def _prepare_cache_dir(self) -> None:
        """Once per agent run: an empty cache directory (Mesos starts with an empty cache:
        the ledger of a previous run is gone)."""
        async with self._cache_lock:
            if self._cache_ready:
                return
            try:
                await asyncio.to_thread(empty_directory, self.options.cache_dir)
            except OSError as error:
                raise CacheError(describe_os_error(error)) from None
            self._cache_ready = True

    def _cache_path(self, key: str) -> str:
        return os.path.join(self.options.cache_dir, key)

    def _evict(self, keys: list[str]) -> None:
        for key in keys:
            self._remove(self._cache_path(key))
            self.stats.cache_evictions += 1
        self.stats.cache_size_bytes = self.ledger.used_bytes

    @staticmethod
    def _remove(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)

    # ------------------------------------------------------------------ sources

    @contextlib.asynccontextmanager
    async def _open(self, session: aiohttp.ClientSession, item: FetchItem) -> AsyncIterator[Source]:
        if item.scheme is Scheme.FILE:
            try:
                size = os.stat(item.location).st_size
            except OSError as error:
                raise FetchError(describe_os_error(error)) from None
            yield LocalSource(item.location, size)
            return
        try:
            async with asyncio.timeout(self.stall_timeout_s):
                response = await session.get(item.location, headers={"Accept-Encoding": "identity"})
        except TimeoutError:
            raise FetchError(f"no response within {self.stall_timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as error:
            code = error.os_error.errno
            reason = os.strerror(code) if code else str(error.os_error)
            raise FetchError(f"cannot connect to {error.host}:{error.port}: {reason}") from None
        except aiohttp.ClientError as error:
            raise FetchError(str(error) or type(error).__name__) from None
        try:
            if response.status != 200:
                raise FetchError(f"HTTP {response.status} {response.reason or ''}".rstrip())
            yield HttpSource(response, response.content_length, self)
        finally:
            response.release()

    async def _deliver(self, source: Source, item: FetchItem, sandbox: str) -> None:
        """Straight into the sandbox: a failing write here is the fetch's own failure."""
        target = sandbox_path(sandbox, item.output_path)
        try:
            await source.save(target, limit=None)
        except CacheError as problem:
            raise FetchError(str(problem)) from None
        await self._finish(item, target, sandbox)

    async def _finish(self, item: FetchItem, target: str, sandbox: str) -> None:
        if item.executable:
            mode = os.stat(target).st_mode
            os.chmod(target, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        elif item.extraction is not None:
            await asyncio.to_thread(extract, target, item.extraction, sandbox, item.gunzipped_name)


class Source:
    size: int | None

    async def save(self, path: str, limit: int | None) -> int:
        raise NotImplementedError


class LocalSource(Source):
    def __init__(self, path: str, size: int) -> None:
        self.path, self.size = path, size

    async def save(self, path: str, limit: int | None) -> int:
        try:
            return await asyncio.to_thread(copy_file, self.path, path)
        except OSError as error:
            raise CacheError(describe_os_error(error)) from None


class HttpSource(Source):
    def __init__(
        self, response: aiohttp.ClientResponse, size: int | None, fetcher: Fetcher
    ) -> None:
        self.response, self.size, self.fetcher = response, size, fetcher

    async def save(self, path: str, limit: int | None) -> int:
        """Stream the body into `path` (through a temporary file, renamed when complete).
        Network trouble is FetchError; a write that fails is CacheError."""
        partial = f"{path}.part"
        try:
            with open(partial, "wb") as out:
                written = await self._stream(out, limit)
            os.replace(partial, path)
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            if isinstance(error, OSError):
                raise CacheError(describe_os_error(error)) from None
            raise
        return written

    async def _stream(self, out: BinaryIO, limit: int | None) -> int:
        stall_s = self.fetcher.stall_timeout_s
        written = 0
        while True:
            try:
                async with asyncio.timeout(stall_s):
                    chunk = await self.response.content.read(CHUNK_BYTES)
            except TimeoutError:
                raise FetchError(
                    f"download stalled for more than {stall_s:g}s after {written} bytes"
                ) from None
            except aiohttp.ClientError as error:
                raise FetchError(f"download interrupted: {error}") from None
            if not chunk:
                break
            written += len(chunk)
            self.fetcher.stats.bytes_downloaded += len(chunk)
            if limit is not None and written > limit:
                raise CacheError("the body is longer than its Content-Length")
            out.write(chunk)
        if self.size is not None and written != self.size:
            raise FetchError(f"got {written} of {self.size} bytes")
        return written


# ---------------------------------------------------------------------- blocking helpers


def describe_os_error(error: OSError) -> str:
    if error.filename:
        return f"{error.strerror or error}: '{error.filename}'"
    return str(error.strerror or error)


def sandbox_path(sandbox: str, relative: str) -> str:
    """The host path of `relative` inside the sandbox, its directories created; refused if
    a link already in the sandbox would take it outside."""
    target = os.path.join(sandbox, relative)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    root = os.path.realpath(sandbox)
    real_parent = os.path.realpath(parent)
    if real_parent != root and not real_parent.startswith(root + os.sep):
        raise FetchError(f"output path '{relative}' leaves the sandbox through a link")
    if os.path.islink(target):
        os.remove(target)
    return target


def copy_file(source: str, target: str) -> int:
    partial = f"{target}.part"
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        raise
    return os.stat(target).st_size


def extract(archive: str, kind: Extraction, sandbox: str, gunzipped_name: str) -> None:
    """Unpack into the sandbox root (as Mesos does), refusing members that would land
    outside it (absolute paths, '..', links pointing out). Runs in a thread."""
    try:
        if kind is Extraction.TAR:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(sandbox, filter="data")
        elif kind is Extraction.ZIP:
            with zipfile.ZipFile(archive) as archive_file:
                for name in archive_file.namelist():
                    parts = name.replace("\\", "/").split("/")
                    if name.startswith("/") or ".." in parts:
                        raise FetchError(f"cannot extract: unsafe member '{name}'")
                archive_file.extractall(sandbox)
        else:
            target = sandbox_path(sandbox, gunzipped_name)
            with gzip.open(archive, "rb") as packed, open(target, "wb") as out:
                shutil.copyfileobj(packed, out, CHUNK_BYTES)
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError) as error:
        raise FetchError(f"cannot extract: {error}") from None


def empty_directory(directory: str) -> None:
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)


def chown_tree(root: str, uid: int, gid: int | None) -> None:
    """The sandbox and everything fetched into it belong to the task's user."""
    group = -1 if gid is None else gid
    os.lchown(root, uid, group)
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(directory, name), uid, group)

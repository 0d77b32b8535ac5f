"""The fetcher against a real aiohttp server on 127.0.0.1 (dynamic port): downloads, local
paths, extraction, renames, failures naming the URI and cause, the stall timeout and the
cache (hits without the network, eviction, one download for concurrent fetches); then a
real master and agent running command tasks with `uris`."""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import gzip
import io
import lzma
import os
import socket
import stat
import tarfile
import threading
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agora.agent.containerizer.fetcher import Fetcher
from agora.agent.containerizer.model import ContainerError
from agora.agent.containerizer.options import ContainerizerOptions
from tests.async_wait import until
from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process

HELLO = b"hello from an archive\n"


class FileServer:
    """Serves `files` by name with a Content-Length; /chunked/<name> without one;
    /gated/<name> only once `gate` is set; /stall sends headers and 10 bytes, then nothing."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        self.gate = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/stall", self._stall)
        app.router.add_get("/chunked/{name}", self._chunked)
        app.router.add_get("/gated/{name}", self._gated)
        app.router.add_get("/{name}", self._file)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _body(self, request: web.Request) -> bytes:
        self.requests.append(request.path)
        name = request.match_info["name"]
        if name not in self.files:
            raise web.HTTPNotFound()
        return self.files[name]

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=self._body(request))

    async def _gated(self, request: web.Request) -> web.Response:
        body = self._body(request)
        await self.gate.wait()
        return web.Response(body=body)

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        body = self._body(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        await asyncio.Event().wait()  # never more: cancelled when the server stops
        return response


def tar_bytes(members: dict[str, bytes], compress: Callable[[bytes], bytes] = bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return compress(buffer.getvalue())


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


FILES = {
    "plain.txt": b"plain\n",
    "app.tar.gz": tar_bytes({"pkg/hello.txt": HELLO}, gzip.compress),
    "app.tar.bz2": tar_bytes({"pkg/hello.txt": HELLO}, bz2.compress),
    "app.tar.xz": tar_bytes({"pkg/hello.txt": HELLO}, lzma.compress),
    "app.zip": zip_bytes({"pkg/hello.txt": HELLO}),
    "notes.txt.gz": gzip.compress(b"notes\n"),
    "tool.sh": b"#!/bin/sh\necho tool\n",
    "evil.tar": tar_bytes({"../evil.txt": b"escaped"}),
    "a.bin": b"a" * 100,
    "b.bin": b"b" * 100,
}


def options(tmp: Path, **overrides: Any) -> ContainerizerOptions:
    return ContainerizerOptions(work_dir=str(tmp / "work"), **overrides)


def run_with_server(
    body: Callable[[FileServer], Awaitable[None]], files: dict[str, bytes] | None = None
) -> None:
    async def main() -> None:
        server = FileServer(dict(FILES if files is None else files))
        await server.start()
        try:
            await body(server)
        finally:
            await server.stop()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_http_file_archives_and_gz_are_fetched_and_extracted(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"

    async def body(server: FileServer) -> None:
        names = ["plain.txt", "app.tar.gz", "notes.txt.gz"]
        uris = [{"value": f"{server.url}/{name}"} for name in names]
        await Fetcher(options(tmp_path)).fetch(uris, str(sandbox), None, None)

    run_with_server(body)
    assert (sandbox / "plain.txt").read_bytes() == b"plain\n"
    assert (sandbox / "pkg" / "hello.txt").read_bytes() == HELLO
    assert (sandbox / "app.tar.gz").read_bytes() == FILES["app.tar.gz"]  # Mesos keeps it
    assert (sandbox / "notes.txt").read_bytes() == b"notes\n"
    assert (sandbox / "notes.txt.gz").exists()


@pytest.mark.parametrize("name", ["app.tar.bz2", "app.tar.xz", "app.zip"])
def test_bz2_xz_and_zip_archives_are_extracted(tmp_path: Path, name: str) -> None:
    sandbox = tmp_path / "sandbox"

    async def body(server: FileServer) -> None:
        uris = [{"value": f"{server.url}/{name}"}]
        await Fetcher(options(tmp_path)).fetch(uris, str(sandbox), None, None)

    run_with_server(body)
    assert (sandbox / "pkg" / "hello.txt").read_bytes() == HELLO


def test_executable_output_file_and_extract_false(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"

    async def body(server: FileServer) -> None:
        uris = [
            {"value": f"{server.url}/tool.sh", "executable": True, "output_file": "bin/run"},
            {"value": f"{server.url}/app.tar.gz", "executable": True},
            {"value": f"{server.url}/app.zip", "extract": False, "output_file": "keep/a.zip"},
        ]
        await Fetcher(options(tmp_path)).fetch(uris, str(sandbox), None, None)

    run_with_server(body)
    tool = sandbox / "bin" / "run"
    assert tool.read_bytes() == FILES["tool.sh"]
    assert tool.stat().st_mode & stat.S_IXUSR and tool.stat().st_mode & stat.S_IXOTH
    assert (sandbox / "app.tar.gz").stat().st_mode & stat.S_IXUSR
    assert not (sandbox / "pkg").exists()  # executable: never extracted
    assert (sandbox / "keep" / "a.zip").read_bytes() == FILES["app.zip"]


def test_file_uris_absolute_and_relative_paths_and_chown(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.tar.gz").write_bytes(FILES["app.tar.gz"])
    (source / "plain.txt").write_bytes(b"local\n")
    sandbox = tmp_path / "sandbox"
    uris = [
        {"value": f"file://{source}/app.tar.gz"},
        {"value": str(source / "plain.txt"), "output_file": "abs.txt"},
        {"value": "src/plain.txt", "output_file": "rel.txt"},
    ]
    fetcher = Fetcher(options(tmp_path, frameworks_home=str(tmp_path)))
    uid = 4321 if os.geteuid() == 0 else None
    asyncio.run(fetcher.fetch(uris, str(sandbox), uid, uid))
    assert (sandbox / "pkg" / "hello.txt").read_bytes() == HELLO
    assert (sandbox / "abs.txt").read_bytes() == b"local\n"
    assert (sandbox / "rel.txt").read_bytes() == b"local\n"
    if uid is not None:
        for path in (sandbox, sandbox / "pkg", sandbox / "pkg" / "hello.txt", sandbox / "abs.txt"):
            assert (path.stat().st_uid, path.stat().st_gid) == (uid, uid)


def fetch_error(tmp_path: Path, uri: dict[str, Any], **overrides: Any) -> str:
    sandbox = tmp_path / "sandbox"
    with pytest.raises(ContainerError) as error:
        asyncio.run(Fetcher(options(tmp_path, **overrides)).fetch([uri], str(sandbox), None, None))
    return str(error.value)


def test_404_connection_refused_and_missing_files_name_the_uri_and_cause(tmp_path: Path) -> None:
    messages: list[str] = []

    async def body(server: FileServer) -> None:
        with pytest.raises(ContainerError) as error:
            uris = [{"value": f"{server.url}/missing.tar.gz"}]
            await Fetcher(options(tmp_path)).fetch(uris, str(tmp_path / "s"), None, None)
        messages.append(str(error.value))
        messages.append(f"{server.url}/missing.tar.gz")

    run_with_server(body)
    assert messages[0] == f"Failed to fetch '{messages[1]}': HTTP 404 Not Found"

    port = free_port()
    refused = fetch_error(tmp_path, {"value": f"http://127.0.0.1:{port}/x"})
    assert refused == (
        f"Failed to fetch 'http://127.0.0.1:{port}/x': "
        f"cannot connect to 127.0.0.1:{port}: Connection refused"
    )
    missing = fetch_error(tmp_path, {"value": "/no/such/file.tar"})
    assert missing.startswith("Failed to fetch '/no/such/file.tar': No such file or directory")
    scheme = fetch_error(tmp_path, {"value": "ftp://h/x"})
    assert scheme == "Invalid fetcher URI: uris[0].value 'ftp://h/x': unsupported scheme 'ftp'"


def test_a_stalled_download_is_aborted(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"

    async def body(server: FileServer) -> None:
        fetcher = Fetcher(options(tmp_path, fetcher_stall_timeout_s=0.3))
        with pytest.raises(ContainerError, match=r"/stall': download stalled for more than 0.3s"):
            await fetcher.fetch([{"value": f"{server.url}/stall"}], str(sandbox), None, None)

    run_with_server(body)
    assert not any(sandbox.iterdir())  # no partial file left behind


def test_archive_members_escaping_the_sandbox_are_refused(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"

    async def body(server: FileServer) -> None:
        uris = [{"value": f"{server.url}/evil.tar"}]
        with pytest.raises(ContainerError, match=r"evil.tar': cannot extract"):
            await Fetcher(options(tmp_path)).fetch(uris, str(sandbox), None, None)

    run_with_server(body)
    assert not (tmp_path / "evil.txt").exists()


def test_a_cache_hit_needs_no_server_and_extracts_straight_from_the_cache(
    tmp_path: Path,
) -> None:
    fetcher = Fetcher(options(tmp_path))
    uris: list[dict[str, Any]] = []

    async def body(server: FileServer) -> None:
        uris.extend(
            [
                {"value": f"{server.url}/app.tar.gz", "cache": True},
                {"value": f"{server.url}/tool.sh", "cache": True, "executable": True},
            ]
        )
        await fetcher.fetch(uris, str(tmp_path / "first"), None, None)
        assert len(server.requests) == 2

    run_with_server(body)  # the server is gone after this
    second = tmp_path / "second"
    asyncio.run(fetcher.fetch(uris, str(second), None, None))
    assert (second / "pkg" / "hello.txt").read_bytes() == HELLO
    assert not (second / "app.tar.gz").exists()  # extracted from the cache, not copied
    assert (second / "tool.sh").stat().st_mode & stat.S_IXUSR
    stats = fetcher.stats
    assert (stats.cache_misses, stats.cache_hits) == (2, 2)
    size = len(FILES["app.tar.gz"]) + len(FILES["tool.sh"])
    assert stats.cache_size_bytes == size and stats.bytes_downloaded == size
    # Another user does not share the cached copy.
    with pytest.raises(ContainerError, match="Connection refused"):
        asyncio.run(fetcher.fetch(uris[:1], str(tmp_path / "third"), 1234, 1234))


def test_the_least_recently_used_entry_is_evicted_to_fit(tmp_path: Path) -> None:
    fetcher = Fetcher(options(tmp_path, fetcher_cache_size_bytes=210))

    async def body(server: FileServer) -> None:
        async def get(name: str) -> None:
            uri = {"value": f"{server.url}/{name}", "cache": True}
            await fetcher.fetch([uri], str(tmp_path / "s"), None, None)

        await get("a.bin")
        await get("b.bin")
        await get("a.bin")  # a hit: b becomes the least recently used
        assert server.requests == ["/a.bin", "/b.bin"]
        await get("plain.txt")  # 6 bytes fit beside a and b (206 of 210)
        await get("tool.sh")  # 20 more do not: b goes
        assert fetcher.stats.cache_evictions == 1
        await get("a.bin")
        await get("b.bin")  # downloaded again
        assert server.requests == ["/a.bin", "/b.bin", "/plain.txt", "/tool.sh", "/b.bin"]
        assert len(os.listdir(fetcher.options.cache_dir)) == len(fetcher.ledger.entries)
        assert fetcher.ledger.used_bytes <= 210

    run_with_server(body)


def test_unknown_sizes_and_a_disabled_cache_bypass_it(tmp_path: Path) -> None:
    async def body(server: FileServer) -> None:
        fetcher = Fetcher(options(tmp_path))
        chunked = {"value": f"{server.url}/chunked/plain.txt", "cache": True}
        for run in ("one", "two"):
            await fetcher.fetch([chunked], str(tmp_path / run), None, None)
            assert (tmp_path / run / "plain.txt").read_bytes() == b"plain\n"
        assert fetcher.stats.cache_bypasses == 2 and len(server.requests) == 2

        disabled = Fetcher(options(tmp_path, fetcher_cache_size_bytes=0))
        plain = {"value": f"{server.url}/plain.txt", "cache": True}
        for run in ("three", "four"):
            await disabled.fetch([plain], str(tmp_path / run), None, None)
        assert len(server.requests) == 4

    run_with_server(body)


def test_an_unusable_cache_falls_back_to_a_direct_download(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")

    async def body(server: FileServer) -> None:
        fetcher = Fetcher(options(tmp_path, fetcher_cache_dir=str(blocker / "cache")))
        uri = {"value": f"{server.url}/app.tar.gz", "cache": True}
        await fetcher.fetch([uri], str(tmp_path / "s"), None, None)
        assert fetcher.stats.cache_bypasses == 1

    run_with_server(body)
    assert (tmp_path / "s" / "pkg" / "hello.txt").read_bytes() == HELLO


def test_concurrent_fetches_of_one_key_download_once(tmp_path: Path) -> None:
    fetcher = Fetcher(options(tmp_path))

    async def body(server: FileServer) -> None:
        uri = {"value": f"{server.url}/gated/app.tar.gz", "cache": True}
        tasks = [
            asyncio.create_task(fetcher.fetch([uri], str(tmp_path / f"s{i}"), None, None))
            for i in range(3)
        ]
        await until(lambda: server.requests)
        server.gate.set()
        await asyncio.gather(*tasks)
        assert server.requests == ["/gated/app.tar.gz"]

    run_with_server(body, {"app.tar.gz": FILES["app.tar.gz"]})
    for i in range(3):
        assert (tmp_path / f"s{i}" / "pkg" / "hello.txt").read_bytes() == HELLO
    assert (fetcher.stats.cache_misses, fetcher.stats.cache_hits) == (1, 2)


# ---------------------------------------------------------------------- through an agent


@contextlib.contextmanager
def server_thread(files: dict[str, bytes]) -> Iterator[FileServer]:
    """The file server on its own event loop, for tests that drive real processes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(_make_server(files), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _make_server(files: dict[str, bytes]) -> FileServer:
    server = FileServer(files)
    await server.start()
    return server


def test_agent_tasks_see_fetched_files_and_fail_on_a_missing_uri(tmp_path: Path) -> None:
    with (
        server_thread(FILES) as server,
        master_process(tmp_path) as master,
        agent_process(tmp_path, master, "--resources", "cpus:2;mem:1024") as agent,
    ):
        fw = Framework(master)
        fetched = command_task("fetched", "cat pkg/hello.txt")
        fetched["command"]["uris"] = [{"value": f"{server.url}/app.tar.gz"}]
        missing_uri = f"{server.url}/missing.tar.gz"
        missing = command_task("missing", "true")
        missing["command"]["uris"] = [{"value": missing_uri}]
        fw.launch(fw.offer(), [fetched, missing])
        fw.until(
            lambda: all(
                set(fw.states(t)) & {"TASK_FINISHED", "TASK_FAILED"} for t in ("fetched", "missing")
            ),
            what="both tasks to end",
        )
        assert fw.states("fetched")[-1] == "TASK_FINISHED"
        failed = fw.last("missing")
        assert failed["state"] == "TASK_FAILED"
        assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
        assert f"'{missing_uri}'" in failed["message"] and "HTTP 404" in failed["message"]

        state = get_json(agent, "/state")
        runs = [
            e
            for f in state["frameworks"] + state["completed_frameworks"]
            for e in f["executors"] + f["completed_executors"]
            if e["id"] == "fetched"
        ]
        sandbox = Path(runs[0]["directory"])
        assert (sandbox / "stdout").read_bytes().startswith(HELLO)
        assert (sandbox / "app.tar.gz").exists()
        fw.close()

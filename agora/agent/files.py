"""The files API (`/files/browse`, `/files/read`, `/files/download`), confined to sandboxes.

A path is either virtual, `/frameworks/<fw>/executors/<ex>/runs/latest[/...]` (or a
container id instead of `latest`), or a real path inside a known sandbox, including
`<work_dir>/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/latest[/...]`. Every
path is resolved with `os.path.realpath` and must stay inside the realpath of its
sandbox: `..`, symlinks leading out and other absolute paths get 403 or 404.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from aiohttp import web

from agora.core.agent.model import Executor

PAGE_BYTES = 4096
MAX_READ_BYTES = 16 * PAGE_BYTES


class FilesError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _all_runs(runs: Iterable[Executor]) -> list[Executor]:
    return list(runs)


def resolve(path: str, work_dir: str, runs: Iterable[Executor]) -> str:
    """The real file a files-API path names, or FilesError (403/404)."""
    if not path:
        raise FilesError(400, "Expecting 'path' in query string")
    candidates = _all_runs(runs)
    parts = [p for p in path.split("/") if p]
    base: str | None = None
    rest: list[str] = []
    if len(parts) >= 6 and parts[0] == "frameworks" and parts[2] == "executors":
        base, rest = _run_dir(parts[1], parts[3], parts[5], candidates), parts[6:]
    else:
        real_prefix = os.path.normpath(path)
        slaves = os.path.join(os.path.abspath(work_dir), "slaves")
        if real_prefix.startswith(slaves + "/"):
            tail = real_prefix[len(slaves) + 1 :].split("/")
            # <agent>/frameworks/<fw>/executors/<ex>/runs/<cid>/...
            if len(tail) >= 7 and tail[1] == "frameworks" and tail[3] == "executors":
                base, rest = _run_dir(tail[2], tail[4], tail[6], candidates), tail[7:]
    if base is None:
        raise FilesError(404, f"Path '{path}' not found")
    if any(p == ".." for p in rest):
        raise FilesError(403, "'..' is not allowed")
    root = os.path.realpath(base)
    target = os.path.realpath(os.path.join(root, *rest))
    if target != root and not target.startswith(root + os.sep):
        raise FilesError(403, f"Path '{path}' leads outside its sandbox")
    if not os.path.exists(target):
        raise FilesError(404, f"Path '{path}' not found")
    return target


def _run_dir(framework_id: str, executor_id: str, run: str, runs: list[Executor]) -> str | None:
    matching = [r for r in runs if r.framework_id == framework_id and r.executor_id == executor_id]
    if run == "latest":
        return matching[-1].directory if matching else None
    for candidate in matching:
        if candidate.container_id == run:
            return candidate.directory
    return None


def _mode_text(mode: int) -> str:
    return stat.filemode(mode)


def browse(target: str, shown_as: str) -> list[dict[str, object]]:
    if not os.path.isdir(target):
        entries = [(shown_as, target)]
    else:
        entries = [
            (f"{shown_as.rstrip('/')}/{name}", os.path.join(target, name))
            for name in sorted(os.listdir(target))
        ]
    out: list[dict[str, object]] = []
    for shown, real in entries:
        try:
            info = os.lstat(real)
        except OSError:
            continue
        out.append(
            {
                "path": shown,
                "nlink": info.st_nlink,
                "size": info.st_size,
                "mtime": info.st_mtime,
                "mode": _mode_text(info.st_mode),
                "uid": str(info.st_uid),
                "gid": str(info.st_gid),
            }
        )
    return out


def read(target: str, offset: int, length: int | None) -> dict[str, object]:
    if os.path.isdir(target):
        raise FilesError(400, "Cannot read a directory")
    size = os.path.getsize(target)
    if offset == -1:
        return {"offset": size, "data": ""}
    if offset < 0:
        raise FilesError(400, "Negative offset")
    if length is None or length < 0:
        length = size - offset
    length = max(0, min(length, MAX_READ_BYTES))
    if offset >= size:
        return {"offset": offset, "data": ""}
    with open(target, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    return {"offset": offset, "data": data.decode("utf-8", "replace")}


def error_response(error: FilesError) -> web.Response:
    return web.Response(status=error.status, text=str(error))

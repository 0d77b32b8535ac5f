"""The image store: layers unpacked once into `<store>/layers/<id>/rootfs`, keyed by
their digest, and shared by every image and container that uses them.

A layer is unpacked in a thread (tarfile, streaming) into `<store>/staging/<tmp>` and
renamed into place, so a half-unpacked layer is never seen and a crash leaves only
staging debris (removed at start). Concurrent requests for one layer wait on one
unpack (an asyncio lock per digest). Unpacking is defensive: member names are made
relative and refused when they climb out with '..', nothing is ever written through a
symlink (every parent directory is checked to be a real directory), hard links must
name a file already in the layer, device nodes are created only as root. Symlinks are
kept as they are: they are never followed on the host and resolve inside the
container's root once it runs.

Whiteouts are stored the way overlayfs reads them when the agent is root: `.wh.<name>`
becomes a 0/0 character device `<name>` and `.wh..wh..opq` becomes the
`trusted.overlay.opaque=y` xattr on its directory. Without root they stay as AUFS-style
`.wh.` files. The copy backend (`apply_layer`) understands both forms."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable
from typing import IO, Protocol, cast

from agora.core.container.images import (
    OPAQUE_WHITEOUT,
    WHITEOUT_PREFIX,
    ImageFormatError,
    member_path,
    whiteout,
)

OPAQUE_XATTR = "trusted.overlay.opaque"
Opener = Callable[[], contextlib.AbstractContextManager[IO[bytes]]]


def layer_key(digest: str) -> str:
    """A directory name for a digest: no ':' (it separates overlayfs lowerdirs)."""
    algorithm, _, encoded = digest.partition(":")
    return encoded if algorithm == "sha256" else f"{algorithm}-{encoded}"


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Hashing:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: _Readable, algorithm: str) -> None:
        self.raw = raw
        self.hash = hashlib.new(algorithm)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class LayerStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.layers_dir = os.path.join(root, "layers")
        self.staging_dir = os.path.join(root, "staging")
        self._locks: dict[str, asyncio.Lock] = {}
        self.overlay_whiteouts = os.geteuid() == 0
        for directory in (self.layers_dir, self.staging_dir):
            os.makedirs(directory, exist_ok=True)
        for leftover in os.listdir(self.staging_dir):
            shutil.rmtree(os.path.join(self.staging_dir, leftover), ignore_errors=True)

    def rootfs(self, digest: str) -> str:
        return os.path.join(self.layers_dir, layer_key(digest), "rootfs")

    def has(self, digest: str) -> bool:
        return os.path.isdir(self.rootfs(digest))

    async def ensure(self, digest: str | None, opener: Opener, compressed: bool = False) -> str:
        """The layer's digest once it is in the store, unpacking it if needed. `digest`
        None: it is computed while unpacking (sha256 of the uncompressed tarball);
        otherwise the unpacked stream must hash to it (`compressed`: the digest is of the
        raw, possibly compressed, blob)."""
        if digest is not None and self.has(digest):
            return digest
        lock = self._locks.setdefault(digest or f"anon-{id(opener)}", asyncio.Lock())
        async with lock:
            if digest is not None and self.has(digest):
                return digest
            return await asyncio.to_thread(self._unpack, digest, opener, compressed)

    def _unpack(self, digest: str | None, opener: Opener, compressed: bool) -> str:
        staging = tempfile.mkdtemp(dir=self.staging_dir)
        try:
            os.chmod(staging, 0o755)
            rootfs = os.path.join(staging, "rootfs")
            os.mkdir(rootfs)
            with opener() as raw:
                actual = _unpack_stream(raw, rootfs, digest, compressed, self.overlay_whiteouts)
            if digest is not None and actual != digest:
                raise ImageFormatError(f"layer content hashes to {actual}, not {digest}")
            final = os.path.dirname(self.rootfs(actual))
            try:
                os.rename(staging, final)
            except OSError:
                if not self.has(actual):
                    raise
            return actual
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _unpack_stream(
    raw: IO[bytes], rootfs: str, digest: str | None, compressed: bool, overlay: bool
) -> str:
    """Unpack one layer stream; returns the digest its bytes hash to."""
    algorithm = (digest or "sha256:").partition(":")[0]
    outer = _Hashing(raw, algorithm) if compressed else None
    head = _Peek(outer if outer is not None else raw)
    stream: _Readable = head
    if head.peek(2) == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=cast(IO[bytes], head), mode="rb")
    elif head.peek(4) == b"\x28\xb5\x2f\xfd":
        raise ImageFormatError("zstd-compressed layers are not supported")
    inner = None if compressed else _Hashing(stream, algorithm)
    _extract(inner if inner is not None else stream, rootfs, overlay)
    hashed = outer if outer is not None else inner
    assert hashed is not None
    hashed.drain()  # tar end padding (and, compressed, the gzip trailer) count too
    return f"{algorithm}:{hashed.hash.hexdigest()}"


class _Peek:
    """Lets the first bytes be looked at before the stream is handed on."""

    def __init__(self, raw: _Readable) -> None:
        self.raw = raw
        self.buffer = b""

    def peek(self, size: int) -> bytes:
        while len(self.buffer) < size:
            more = self.raw.read(size - len(self.buffer))
            if not more:
                break
            self.buffer += more
        return self.buffer[:size]

    def read(self, size: int = -1) -> bytes:
        if self.buffer:
            if size < 0:
                data, self.buffer = self.buffer + self.raw.read(), b""
                return data
            data, self.buffer = self.buffer[:size], self.buffer[size:]
            return data
        return self.raw.read(size)


class _Extraction:
    def __init__(self, rootfs: str, overlay: bool) -> None:
        self.rootfs = rootfs
        self.overlay = overlay
        self.root = os.geteuid() == 0
        self.safe_dirs: set[str] = {"."}
        self.dir_times: list[tuple[str, int, int]] = []

    def parent(self, name: str) -> str:
        """Create (or check) `name`'s parent directories, never through a symlink."""
        head = name.rpartition("/")[0] or "."
        if head in self.safe_dirs:
            return head
        current = "."
        for part in head.split("/"):
            current = part if current == "." else f"{current}/{part}"
            if current in self.safe_dirs:
                continue
            path = os.path.join(self.rootfs, current)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if not stat.S_ISDIR(mode):
                    raise ImageFormatError(f"'{name}' would be written through '{current}'")
            self.safe_dirs.add(current)
        return head

    def clear(self, name: str) -> str:
        """The host path for `name`, with whatever non-directory was there removed."""
        self.parent(name)
        path = os.path.join(self.rootfs, name)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)
        return path

    def member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        name = member_path(info.name)
        if name == ".":
            return
        removal = whiteout(name)
        if removal is not None:
            self.whiteout(*removal)
            return
        path = self.clear(name)
        if info.isdir():
            if not os.path.isdir(path):
                os.mkdir(path, 0o755)
            self.safe_dirs.add(name)
            self.dir_times.append((path, info.mode, int(info.mtime)))
            self.owner(path, info)
            return
        if info.issym():
            os.symlink(info.linkname, path)
        elif info.islnk():
            self.hardlink(info, path)
            return
        elif info.isreg():
            self.regular(tar, info, path)
        elif info.ischr() or info.isblk() or info.isfifo():
            if not self.device(info, path):
                return
        else:
            return  # other member types (e.g. sparse leftovers) are skipped
        self.owner(path, info)
        if not info.issym():
            os.chmod(path, info.mode & 0o7777)
        os.utime(path, (info.mtime, info.mtime), follow_symlinks=False)

    def regular(self, tar: tarfile.TarFile, info: tarfile.TarInfo, path: str) -> None:
        source = tar.extractfile(info)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as target:
            if source is not None:
                shutil.copyfileobj(source, target, 1 << 20)

    def hardlink(self, info: tarfile.TarInfo, path: str) -> None:
        target = member_path(info.linkname)
        self.parent(target)
        source = os.path.join(self.rootfs, target)
        try:
            mode = os.lstat(source).st_mode
        except FileNotFoundError:
            raise ImageFormatError(f"hard link '{info.name}' names a missing file") from None
        if stat.S_ISDIR(mode):
            raise ImageFormatError(f"hard link '{info.name}' names a directory")
        os.link(source, path, follow_symlinks=False)

    def device(self, info: tarfile.TarInfo, path: str) -> bool:
        if info.isfifo():
            os.mkfifo(path, info.mode & 0o7777)
            return True
        if not self.root:
            return False
        kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
        os.mknod(path, kind | (info.mode & 0o7777), os.makedev(info.devmajor, info.devminor))
        return True

    def owner(self, path: str, info: tarfile.TarInfo) -> None:
        if self.root:
            os.lchown(path, info.uid, info.gid)

    def whiteout(self, kind: str, name: str) -> None:
        if kind == "opaque":
            self.parent(f"{name}/x")
            directory = os.path.join(self.rootfs, name)
            if self.overlay:
                os.setxattr(directory, OPAQUE_XATTR, b"y", follow_symlinks=False)
            else:
                open(os.path.join(directory, OPAQUE_WHITEOUT), "wb").close()
            return
        path = self.clear(name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        if self.overlay:
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        else:
            head, _, base = name.rpartition("/")
            marker = f"{head}/{WHITEOUT_PREFIX}{base}" if head else f"{WHITEOUT_PREFIX}{base}"
            open(os.path.join(self.rootfs, marker), "wb").close()

    def finish(self) -> None:
        for path, mode, mtime in reversed(self.dir_times):
            os.chmod(path, mode & 0o7777)
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _extract(stream: _Readable, rootfs: str, overlay: bool) -> None:
    extraction = _Extraction(rootfs, overlay)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tar:
            for info in tar:
                extraction.member(tar, info)
    except tarfile.TarError as error:
        raise ImageFormatError(f"bad layer tarball: {error}") from error
    extraction.finish()


# ---------------------------------------------------------------------- copy backend


def is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def apply_layer(layer: str, target: str) -> None:
    """Copy one unpacked layer over `target` (the copy backend), honouring both
    whiteout forms: deleting what a whiteout names, emptying an opaque directory."""
    for current, dirs, files in os.walk(layer):
        relative = os.path.relpath(current, layer)
        destination = target if relative == "." else os.path.join(target, relative)
        if relative != "." and _opaque(current):
            _remove(destination)
        if not os.path.isdir(destination) or os.path.islink(destination):
            _remove(destination)
            os.mkdir(destination)
        shutil.copystat(current, destination, follow_symlinks=False)
        if os.geteuid() == 0:
            st = os.lstat(current)
            os.lchown(destination, st.st_uid, st.st_gid)
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(current, d))]):
            _copy_entry(os.path.join(current, name), destination, name)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(current, d))]
        for name in dirs:
            inner = os.path.join(destination, name)
            if os.path.lexists(inner) and not os.path.isdir(inner):
                _remove(inner)


def _opaque(directory: str) -> bool:
    if os.path.lexists(os.path.join(directory, OPAQUE_WHITEOUT)):
        return True
    try:
        return os.getxattr(directory, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _copy_entry(source: str, destination: str, name: str) -> None:
    if name == OPAQUE_WHITEOUT:
        return
    if name.startswith(WHITEOUT_PREFIX):
        _remove(os.path.join(destination, name[len(WHITEOUT_PREFIX) :]))
        return
    st = os.lstat(source)
    target = os.path.join(destination, name)
    _remove(target)
    if is_whiteout_device(st):
        return
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(st.st_mode):
        shutil.copy2(source, target, follow_symlinks=False)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        os.mknod(target, st.st_mode, st.st_rdev)
    else:
        return
    if os.geteuid() == 0:
        os.lchown(target, st.st_uid, st.st_gid)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)

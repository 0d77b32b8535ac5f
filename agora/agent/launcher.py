"""The supervisor's launcher: starts one container process, applying a LaunchInfo
between fork and exec (Mesos's `mesos-containerizer launch`, without a helper binary).

The supervisor (a single-threaded asyncio process, parent and reaper of every task)
forks itself; the child runs the steps below and execs the user's command, so there is
no Python interpreter per task and the process is in its cgroups and namespaces before
the first instruction of the user's code runs. The order in the child (see
launch_info.py):

    setsid; stdin /dev/null, stdout/stderr appended to <cwd>/stdout, <cwd>/stderr
    join cgroups (write "0" to <dir>/cgroup.procs)
    enter the mount namespace of `join_namespaces_of`, or unshare a new one (made
        recursively slave: nothing mounted inside propagates back to the host)
    mount `overlay` at `rootfs`, apply `mounts`, mount a fresh /proc, pivot_root
    chdir; setgroups, setgid, setuid; default signal dispositions, empty mask; exec

A new pid namespace is created without a double fork: the supervisor unshares
CLONE_NEWPID (which only changes where its *next* child goes), forks, and setns back to
its own pid namespace (opened once at start). Joining a running container's pid
namespace is the same trick with setns to that process's namespace.

Errors travel back over a CLOEXEC pipe: EOF without data means the exec succeeded; any
text is the reason the child gave up (it then `os._exit`s, never returning into the
supervisor's loop).

Why fork and not "posix_spawn with the supervisor temporarily in the container's
cgroups" (faster: in a bare loop here ~1,400 vs ~750 launches/s): while the supervisor
sits in the container's cgroups it takes one of the container's `pids.max` slots (a
pids.max=1 container could not start at all), its page faults and kernel allocations are
charged to the container's memory cgroup (a container at its limit can OOM-kill the
supervisor), and an agent destroying that container at the same moment (cgroup.kill,
freezer, killing every pid in cgroup.procs) would kill or freeze the supervisor itself.
Fork is glibc's fork() through ctypes: Python's os.fork() runs the interpreter's at-fork
machinery (~0.6 ms more per launch here), which a child that only makes system calls and
execs does not need (the supervisor has no other threads). Every object the child
touches costs a copy-on-write fault, so its path is short (see `_Plan`).

Measured through a real supervisor (2 shared vCPUs, /bin/true, journal included):
no container ~800-1,500/s; cgroups cpu,cpuacct,memory,pids ~280-375/s (2.7-3.6 ms);
pid+mount namespaces with /proc ~235/s; overlay + pivot_root into a busybox rootfs
with namespaces and cgroups ~260/s.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_codes
import gc
import os
import platform
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from agora.agent.containerizer.launch_info import LaunchInfo, Mount

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine(), 155)

OUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND
# Dispositions a task must not inherit from the supervisor (Python ignores SIGPIPE and
# SIGXFSZ, the supervisor ignores SIGINT and SIGHUP).
IGNORED_BY_SUPERVISOR = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGHUP)
# posix_spawn resets these too; after a fork, exec itself resets SIGCHLD's handler.
DEFAULT_SIGNALS = (*IGNORED_BY_SUPERVISOR, signal.SIGCHLD)
SIG_BLOCK, SIG_SETMASK = 0, 2
# Per-mount flags a read-only remount must keep (statvfs f_flag -> mount flag).
_KEPT_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)
_MOUNT_DATA_MAX = 4000  # the kernel copies one page of mount options

_libc = ctypes.CDLL(None, use_errno=True)
_pylibc = ctypes.PyDLL(None, use_errno=True)  # fork with the GIL held throughout
_fork = _pylibc.fork
_fork.restype = ctypes.c_int
_fork.argtypes = []
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_mount = _libc.mount
_mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
# sigprocmask through ctypes with prebuilt sets: signal.pthread_sigmask builds Python sets
# (and in the child every allocation is a copy-on-write fault).
_sigset_t = ctypes.c_ulong * 16  # glibc's sigset_t: 1024 bits
_sigprocmask = _libc.sigprocmask
_sigprocmask.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_FULL_SET = _sigset_t(*([~0 & 0xFFFFFFFFFFFFFFFF] * 16))
_EMPTY_SET = _sigset_t()
_FULL_ADDRESS = ctypes.addressof(_FULL_SET)
_EMPTY_ADDRESS = ctypes.addressof(_EMPTY_SET)


class LaunchError(Exception):
    """The process could not be started; the message is the reason (`failed` reply)."""


def _check(result: int, what: str) -> None:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    what = f"mount {fstype or source} on {target}"
    _check(_mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)), what)


def unshare(flags: int) -> None:
    _check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_setns(fd, nstype), "setns")


class Launcher:
    """Forks the supervisor for container processes; one per supervisor."""

    def __init__(self) -> None:
        # The supervisor's own pid namespace, to come back to after a fork into another.
        self.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.own_pid_ns)

    def spawn(
        self,
        exe: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        info: LaunchInfo,
    ) -> int:
        """Start `exe` in the container described by `info`; returns its pid (in the
        supervisor's pid namespace) once it has exec'd, or raises LaunchError."""
        plan = _Plan(
            pipe=-1,
            exe=exe,
            argv=list(argv),
            env=dict(env),
            cwd=cwd,
            cgroup_procs=[os.path.join(d, "cgroup.procs") for d in info.cgroups],
            info=info if _needs_setup(info) else None,
        )
        read_fd, plan.pipe = os.pipe2(os.O_CLOEXEC)
        # Until the child has exec'd, signals wait (blocked): the child's copies of the
        # supervisor's handlers would wake the supervisor's loop through the shared
        # wakeup fd. Meanwhile the dispositions the task must not inherit are set to
        # default here, before the fork, so the child need not (every call in the child
        # costs copy-on-write faults); the supervisor gets its own back once the child
        # has exec'd.
        mask = _sigset_t()
        _sigprocmask(SIG_BLOCK, _FULL_ADDRESS, ctypes.addressof(mask))
        saved = [
            (number, signal.signal(number, signal.SIG_DFL)) for number in IGNORED_BY_SUPERVISOR
        ]
        try:
            try:
                pid = self._fork(info)
                if pid == 0:
                    _child(plan)
            finally:
                os.close(plan.pipe)
            error = _read_all(read_fd)
        finally:
            os.close(read_fd)
            for number, handler in saved:
                signal.signal(number, handler)
            _sigprocmask(SIG_SETMASK, ctypes.addressof(mask), None)
        if error:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # it is exiting: do not leave it to the reaper
            raise LaunchError(error)
        return pid

    def _fork(self, info: LaunchInfo) -> int:
        """fork(), with the child in a new pid namespace or the one of
        `join_namespaces_of` when asked; the supervisor itself never changes namespace."""
        switched = False
        if info.join_namespaces_of is not None:
            try:
                fd = os.open(f"/proc/{info.join_namespaces_of}/ns/pid", os.O_RDONLY)
            except OSError as error:
                raise LaunchError(
                    f"Cannot join the namespaces of pid {info.join_namespaces_of}: {error.strerror}"
                ) from None
            try:
                setns(fd, CLONE_NEWPID)
            except OSError as error:
                raise LaunchError(str(error)) from None
            finally:
                os.close(fd)
            switched = True
        elif "pid" in info.namespaces:
            try:
                unshare(CLONE_NEWPID)
            except OSError as error:
                raise LaunchError(f"Cannot create a pid namespace: {error}") from None
            switched = True
        pid = int(_fork())
        if pid == 0:
            return 0
        code = ctypes.get_errno()
        if switched:
            # Only this process's pid_for_children changes: no child is affected.
            setns(self.own_pid_ns, CLONE_NEWPID)
        if pid < 0:
            raise LaunchError(f"fork: {os.strerror(code)}")
        return pid


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


# ---------------------------------------------------------------------- the child


@dataclass
class _Plan:
    """Everything the child needs, computed in the parent: every Python object the child
    touches costs a copy-on-write page fault, so its path is kept short."""

    pipe: int
    exe: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    cgroup_procs: list[str]
    info: LaunchInfo | None  # None: nothing beyond cgroups


def _needs_setup(info: LaunchInfo) -> bool:
    return bool(
        _needs_mount_namespace(info)
        or info.join_namespaces_of is not None
        or info.working_directory
        or info.uid is not None
        or info.gid is not None
    )


def _child(plan: _Plan) -> NoReturn:
    """Runs in the forked child only (signals blocked, dispositions already default): set
    the process up and exec, or report why not and exit."""
    try:
        gc.disable()  # no collection walking (and copying) the supervisor's heap
        os.setsid()
        _redirect(plan.cwd)
        for path in plan.cgroup_procs:
            _join_cgroup(path)
        if plan.info is not None:
            _setup(plan.info, plan.cwd)
        _sigprocmask(SIG_SETMASK, _EMPTY_ADDRESS, None)
        _exec(plan.exe, plan.argv, plan.env)
    except BaseException as error:  # everything must end in _exit
        with contextlib.suppress(BaseException):
            message = str(error) or repr(error)
            if isinstance(error, OSError) and error.filename is None and error.strerror:
                message = error.strerror
            os.write(plan.pipe, message.encode())
    finally:
        os._exit(127)


def _setup(info: LaunchInfo, cwd: str) -> None:
    _enter_mount_namespace(info)
    if info.join_namespaces_of is None:
        _filesystem(info)
    _chdir(info, cwd)
    _drop_privileges(info)


def _redirect(cwd: str) -> None:
    os.chdir(cwd)
    for number, name, flags in (
        (0, "/dev/null", os.O_RDONLY),
        (1, "stdout", OUT_FLAGS),
        (2, "stderr", OUT_FLAGS),
    ):
        try:
            fd = os.open(name, flags, 0o644)
        except OSError as error:
            path = os.path.join(cwd, name)
            raise OSError(error.errno, f"Cannot open {path}: {error.strerror}") from None
        if fd != number:
            os.dup2(fd, number)
            os.close(fd)


def _join_cgroup(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as error:
        directory = os.path.dirname(path)
        raise OSError(error.errno, f"Cannot join cgroup {directory}: {error.strerror}") from None


def _needs_mount_namespace(info: LaunchInfo) -> bool:
    """Never mount anything in the host's namespace: any mount implies a new one."""
    return bool(
        "mount" in info.namespaces or info.rootfs or info.mounts or info.mount_proc or info.overlay
    )


def _enter_mount_namespace(info: LaunchInfo) -> None:
    if info.join_namespaces_of is not None:
        path = f"/proc/{info.join_namespaces_of}/ns/mnt"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise OSError(error.errno, f"Cannot open {path}: {error.strerror}") from None
        try:
            setns(fd, CLONE_NEWNS)
        finally:
            os.close(fd)
    elif _needs_mount_namespace(info):
        unshare(CLONE_NEWNS)
        mount(None, "/", None, MS_REC | MS_SLAVE, None)


def _filesystem(info: LaunchInfo) -> None:
    root = info.rootfs
    if root is not None:
        if info.overlay is not None:
            _mount_overlay(info, root)
        else:
            mount(root, root, None, MS_BIND | MS_REC, None)  # pivot_root needs a mount
    for item in info.mounts:
        _apply_mount(item, root)
    if info.mount_proc:
        target = _inside(root, "/proc") if root else "/proc"
        os.makedirs(target, exist_ok=True)
        mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    if root is not None:
        _pivot_root(root)


def _mount_overlay(info: LaunchInfo, root: str) -> None:
    overlay = info.overlay
    assert overlay is not None
    paths = [*overlay.lower, overlay.upper, overlay.work]
    data = _overlay_data(paths)
    if len(data) > _MOUNT_DATA_MAX:
        # Many layers: name them relative to their common parent (overlayfs resolves
        # the options against the caller's cwd) to fit the kernel's one page.
        base = os.path.commonpath(paths)
        os.chdir(base)
        data = _overlay_data([os.path.relpath(p, base) for p in paths])
    mount("overlay", root, "overlay", 0, data)


def _overlay_data(paths: list[str]) -> str:
    *lower, upper, work = paths
    return f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"


def _inside(root: str, target: str) -> str:
    """`target` (absolute in the container) as a host path under `root`, resolving
    symlinks inside the root so an image's link cannot point a mount at the host."""
    resolved = root
    parts = [p for p in target.split("/") if p not in ("", ".")]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = os.path.dirname(resolved) if resolved != root else root
            continue
        candidate = os.path.join(resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(errno_codes.ELOOP, f"Too many links under {root}{target}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = root
            parts = [p for p in link.split("/") if p not in ("", ".")] + parts
            continue
        resolved = candidate
    return resolved


def _apply_mount(item: Mount, root: str | None) -> None:
    target = _inside(root, item.target) if root else item.target
    if item.fstype is None:
        _make_target(target, directory=os.path.isdir(item.source))
        flags = MS_BIND | (MS_REC if item.recursive else 0)
        mount(item.source, target, None, flags, None)
        if item.read_only:
            kept = os.statvfs(target).f_flag
            extra = sum(flag for st, flag in _KEPT_FLAGS if kept & st)
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | extra, None)
    else:
        _make_target(target, directory=True)
        flags = MS_RDONLY if item.read_only else 0
        mount(item.source, target, item.fstype, flags, item.options)


def _make_target(target: str, directory: bool) -> None:
    if directory:
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))


def _pivot_root(root: str) -> None:
    """runc's way: pivot_root(".", ".") stacks the old root on the new one, then the old
    root is detached; no directory is needed inside the (maybe read-only) rootfs."""
    old_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(root)
        _check(_syscall(SYS_PIVOT_ROOT, b".", b"."), f"pivot_root into {root}")
        os.fchdir(old_root)
    finally:
        os.close(old_root)
    mount(None, ".", None, MS_REC | MS_SLAVE, None)
    _check(_umount2(b".", MNT_DETACH), "unmount the old root")
    os.chdir("/")


def _chdir(info: LaunchInfo, cwd: str) -> None:
    if info.working_directory is not None:
        directory = info.working_directory
    elif info.rootfs is not None and info.join_namespaces_of is None:
        directory = "/"
    else:
        directory = cwd  # the host sandbox (also after joining a rootfs-less container)
    try:
        os.chdir(directory)
    except OSError as error:
        raise OSError(error.errno, f"Cannot chdir to {directory}: {error.strerror}") from None


def _drop_privileges(info: LaunchInfo) -> None:
    """Last, after every mount: the task runs as the container's user."""
    if info.uid is None and info.gid is None:
        return
    try:
        groups = list(info.groups) or ([info.gid] if info.gid is not None else [])
        os.setgroups(groups)
        if info.gid is not None:
            os.setgid(info.gid)
        if info.uid is not None:
            os.setuid(info.uid)
    except OSError as error:
        raise OSError(
            error.errno, f"Cannot switch to uid {info.uid} gid {info.gid}: {error.strerror}"
        ) from None


def _exec(exe: str, argv: list[str], env: dict[str, str]) -> NoReturn:
    """execve, searching PATH (of the task's env, in the container's filesystem) for a
    bare name; the error names the executable like the posix_spawn path does."""
    if "/" in exe:
        try:
            os.execve(exe, argv, env)
        except OSError as error:
            raise OSError(error.errno, f"{exe}: {error.strerror}") from None
    denied: OSError | None = None
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", exe)
        try:
            os.execve(path, argv, env)
        except OSError as error:
            if error.errno in (errno_codes.ENOENT, errno_codes.ENOTDIR):
                continue
            if error.errno == errno_codes.EACCES:
                denied = error
                continue
            raise OSError(error.errno, f"{path}: {error.strerror}") from None
    if denied is not None:
        raise OSError(denied.errno, f"{exe}: {denied.strerror}")
    raise FileNotFoundError(errno_codes.ENOENT, f"{exe}: not found on PATH")

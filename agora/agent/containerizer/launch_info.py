"""What a container's process needs done between fork and exec (Mesos's
ContainerLaunchInfo): isolators and the provisioner contribute, the supervisor's
launcher applies it in the child. Plain JSON-able data: it crosses the supervisor socket.

Order in the child (agora/agent/launcher.py): join `cgroups`; enter the namespaces of
`join_namespaces_of`, or create `namespaces`; mount `overlay` at `rootfs`; apply
`mounts` in order; mount a fresh /proc when `mount_proc`; pivot_root into `rootfs`;
chdir to `working_directory`; drop to `uid`/`gid`/`groups`; exec with `env` merged
over the process's environment."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

NAMESPACES = ("pid", "mount")


@dataclass
class Mount:
    """A bind mount (the default) or a filesystem mount. `target` is absolute; with a
    rootfs it is inside the rootfs (the launcher prefixes it) and is created if missing."""

    source: str
    target: str
    fstype: str | None = None  # None: bind mount of `source`
    options: str | None = None  # data for the filesystem (e.g. "size=64m")
    read_only: bool = False
    recursive: bool = True


@dataclass
class Overlay:
    """Layers stacked by overlayfs: `lower` from top to bottom, `upper`/`work` writable
    directories of this container."""

    lower: list[str]
    upper: str
    work: str


@dataclass
class LaunchInfo:
    cgroups: list[str] = field(default_factory=list)  # cgroup dirs joined before exec
    namespaces: list[str] = field(default_factory=list)  # new ones: "pid", "mount"
    join_namespaces_of: int | None = None  # enter this pid's mount/pid namespaces instead
    mount_proc: bool = False
    rootfs: str | None = None  # pivot_root here (needs "mount")
    overlay: Overlay | None = None  # mounted at rootfs first
    mounts: list[Mount] = field(default_factory=list)
    working_directory: str | None = None
    uid: int | None = None
    gid: int | None = None
    groups: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def merge(self, other: LaunchInfo | None) -> None:
        """Add another isolator's contribution (later scalar values win)."""
        if other is None:
            return
        self.cgroups += [c for c in other.cgroups if c not in self.cgroups]
        self.namespaces += [n for n in other.namespaces if n not in self.namespaces]
        self.mounts += other.mounts
        self.groups += [g for g in other.groups if g not in self.groups]
        self.env.update(other.env)
        self.mount_proc = self.mount_proc or other.mount_proc
        for name in ("join_namespaces_of", "rootfs", "overlay", "working_directory", "uid", "gid"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)

    @property
    def needs_fork(self) -> bool:
        """Anything beyond what posix_spawn can do (cgroups excepted: see launcher)."""
        return bool(
            self.namespaces
            or self.join_namespaces_of is not None
            or self.rootfs
            or self.mounts
            or self.uid is not None
            or self.gid is not None
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], {}, False)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchInfo:
        data = dict(data)
        overlay = data.pop("overlay", None)
        mounts = [Mount(**m) for m in data.pop("mounts", [])]
        info = cls(**data, mounts=mounts)
        if overlay is not None:
            info.overlay = Overlay(**overlay)
        return info

"""The image provisioner (Mesos's provisioner with the local docker puller): makes a
container's image ready as a root filesystem without any Docker daemon.

Which image: ContainerInfo {type: MESOS, mesos: {image: {type: DOCKER, docker: {name}}}}
(APPC images are refused). The name is resolved as follows:
- an absolute path to a directory holding an `oci-layout` file: an OCI image layout
  (index.json; the manifest named 'latest', else the only or the first one, for this
  machine's architecture);
- an absolute path to another directory: a plain root filesystem, used as it is (its
  only layer; never modified: containers write to their own upper layer);
- an absolute path to a file: a `docker save` tarball (its only image);
- anything else: an image reference looked up, like Mesos's local puller, in
  --docker_registry (a directory of `docker save` tarballs) as `<name as written>.tar`
  (`busybox` -> busybox.tar, `busybox:1.36` -> `busybox:1.36.tar`, `reg.io/a/b:t` ->
  `reg.io/a/b:t.tar`); a name with no tag or the tag `latest` also finds
  `<repository>.tar`. Remote registries are not supported.
A missing or malformed image fails the launch: "Failed to provision image '<name>': why".

Store (--docker_store_dir, default <work_dir>/store/docker): `layers/<digest>/rootfs`
unpacked once per layer (see image_store), `images/<key>.json` the layer list and
config of each image source seen (keyed by path, size and mtime, so a rewritten tarball
is read again), also kept in memory: provisioning a stored image again costs a stat
and three mkdirs.

Backends (--image_provisioner_backend; default overlay when the agent is root and an
overlay mount works in a private mount namespace, else copy):
- overlay: the layers become overlayfs lowerdirs (top first) with a per-container upper
  and work dir under <work_dir>/provisioner/containers/<id>/; the mount itself happens
  in the container's own mount namespace (the launcher), so nothing is mounted on the
  host and nothing can leak when the container ends;
- copy: the layers are copied in order into <work_dir>/provisioner/containers/<id>/rootfs
  with whiteouts applied.
`destroy` removes the container's directory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from agora.agent.containerizer.image_formats import (
    ImagePlan,
    docker_archive_plan,
    oci_layout_plan,
)
from agora.agent.containerizer.image_store import LayerStore, apply_layer
from agora.agent.containerizer.launch_info import Overlay
from agora.agent.containerizer.model import ContainerError, Provisioned
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.container.images import (
    ImageFormatError,
    ImageReference,
    parse_reference,
    registry_archives,
)

log = logging.getLogger("agora.agent.provisioner")


@dataclass(frozen=True)
class ImageSource:
    kind: str  # "oci" | "rootfs" | "archive"
    path: str
    reference: ImageReference | None = None


@dataclass
class ImageRecord:
    """What the store knows of one image source: its layers' rootfs dirs, bottom first."""

    layers: list[str]
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    digest: str = ""


def image_name(image: Mapping[str, Any]) -> str:
    docker = image.get("docker")
    if isinstance(docker, Mapping) and isinstance(docker.get("name"), str):
        return str(docker["name"])
    appc = image.get("appc")
    if isinstance(appc, Mapping) and isinstance(appc.get("name"), str):
        return str(appc["name"])
    return ""


def resolve(name: str, registry: str | None) -> ImageSource:
    """Where an image name points (see the module docstring)."""
    if os.path.isabs(name):
        if os.path.isdir(name):
            kind = "oci" if os.path.isfile(os.path.join(name, "oci-layout")) else "rootfs"
            return ImageSource(kind, name)
        if os.path.isfile(name):
            return ImageSource("archive", name)
        raise ImageFormatError(f"'{name}' does not exist")
    reference = parse_reference(name)
    if not registry:
        raise ImageFormatError("no --docker_registry directory to look it up in")
    if not os.path.isabs(registry):
        raise ImageFormatError(
            f"--docker_registry '{registry}' is not a local directory "
            "(pulling from remote registries is not supported)"
        )
    candidates = [os.path.join(registry, archive) for archive in registry_archives(reference)]
    for path in candidates:
        if os.path.isfile(path):
            return ImageSource("archive", path, reference)
    raise ImageFormatError(f"Failed to find archive for image '{reference}' at '{candidates[0]}'")


class Provisioner:
    def __init__(self, options: ContainerizerOptions) -> None:
        self.options = options
        self.containers_dir = os.path.join(options.provisioner_dir, "containers")
        self.images_dir = os.path.join(options.store_dir, "images")
        self._store: LayerStore | None = None
        self._records: dict[str, ImageRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._backend: str | None = options.image_provisioner_backend

    @property
    def store(self) -> LayerStore:
        if self._store is None:
            self._store = LayerStore(self.options.store_dir)
            os.makedirs(self.images_dir, exist_ok=True)
        return self._store

    async def provision(self, container_id: str, image: Mapping[str, Any]) -> Provisioned:
        name = image_name(image)
        try:
            kind = image.get("type", "DOCKER" if "docker" in image else None)
            if kind != "DOCKER":
                raise ImageFormatError(
                    f"image type {kind} is not supported (use type DOCKER with docker.name)"
                )
            if not name:
                raise ImageFormatError("Image.docker.name is missing")
            if not container_id or "/" in container_id or container_id in (".", ".."):
                raise ImageFormatError(f"bad container id '{container_id}'")
            source = resolve(name, self.options.docker_registry)
            record = await self._record(source)
            backend = await self.backend()
            if backend == "overlay":
                return self._overlay(container_id, record)
            return await asyncio.to_thread(self._copy, container_id, record)
        except (ImageFormatError, OSError, ValueError) as error:
            raise ContainerError(f"Failed to provision image '{name}': {error}") from error

    def destroy(self, container_id: str) -> None:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            return
        directory = os.path.join(self.containers_dir, container_id)
        if os.path.lexists(directory):
            shutil.rmtree(directory)

    def leftovers(self, known: set[str]) -> list[str]:
        """Container dirs of containers that no longer exist (after a restart)."""
        try:
            names = os.listdir(self.containers_dir)
        except FileNotFoundError:
            return []
        return [n for n in names if n not in known]

    # ------------------------------------------------------------------ images

    async def _record(self, source: ImageSource) -> ImageRecord:
        if source.kind == "rootfs":
            return ImageRecord([source.path], digest=f"rootfs:{source.path}")
        key = _source_key(source)
        record = self._records.get(key)
        if record is not None and all(os.path.isdir(layer) for layer in record.layers):
            return record
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            record = self._records.get(key) or await asyncio.to_thread(self._load_record, key)
            if record is None or not all(os.path.isdir(layer) for layer in record.layers):
                record = await self._pull(source, key)
            self._records[key] = record
            return record

    def _record_path(self, key: str) -> str:
        return os.path.join(self.images_dir, hashlib.sha256(key.encode()).hexdigest() + ".json")

    def _load_record(self, key: str) -> ImageRecord | None:
        try:
            with open(self._record_path(key)) as f:
                data = json.load(f)
            return ImageRecord(**data)
        except (OSError, ValueError, TypeError):
            return None

    async def _pull(self, source: ImageSource, key: str) -> ImageRecord:
        """Read the image's metadata and unpack its missing layers (all in threads)."""
        plan: ImagePlan
        if source.kind == "oci":
            plan = await asyncio.to_thread(oci_layout_plan, source.path)
        else:
            plan = await asyncio.to_thread(docker_archive_plan, source.path, source.reference)
        store = self.store
        digests = await asyncio.gather(
            *(store.ensure(layer.digest, layer.opener, layer.compressed) for layer in plan.layers)
        )
        record = ImageRecord(
            [store.rootfs(d) for d in digests],
            dict(plan.config.env),
            plan.config.working_dir,
            hashlib.sha256("\n".join(digests).encode()).hexdigest(),
        )
        await asyncio.to_thread(self._save_record, key, record)
        return record

    def _save_record(self, key: str, record: ImageRecord) -> None:
        path = self._record_path(key)
        fd, staging = tempfile.mkstemp(dir=self.images_dir)
        with os.fdopen(fd, "w") as f:
            json.dump({**asdict(record), "source": key}, f)
        os.replace(staging, path)

    # ------------------------------------------------------------------ backends

    async def backend(self) -> str:
        if self._backend is None:
            self._backend = await asyncio.to_thread(self._probe_overlay)
            log.info("image provisioner backend: %s", self._backend)
        if self._backend not in ("overlay", "copy"):
            raise ImageFormatError(f"unknown provisioner backend '{self._backend}'")
        return self._backend

    def _probe_overlay(self) -> str:
        """overlay if this agent can mount one on its work dir's filesystem (tried once,
        in a throwaway mount namespace), else copy."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            return "copy"
        os.makedirs(self.options.provisioner_dir, exist_ok=True)
        probe = tempfile.mkdtemp(prefix="overlay-probe-", dir=self.options.provisioner_dir)
        try:
            dirs = {n: os.path.join(probe, n) for n in ("lower", "upper", "work", "merged")}
            for directory in dirs.values():
                os.mkdir(directory)
            data = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
            argv = ["unshare", "--mount", "--propagation", "private", "mount", "-t", "overlay"]
            result = subprocess.run(
                [*argv, "-o", data, "overlay", dirs["merged"]],
                check=False,
                capture_output=True,
                timeout=10,
            )
            return "overlay" if result.returncode == 0 else "copy"
        except (OSError, subprocess.SubprocessError):
            return "copy"
        finally:
            shutil.rmtree(probe, ignore_errors=True)

    def _overlay(self, container_id: str, record: ImageRecord) -> Provisioned:
        base = os.path.join(self.containers_dir, container_id)
        upper, work, rootfs = (os.path.join(base, n) for n in ("upper", "work", "rootfs"))
        for directory in (upper, work, rootfs):
            os.makedirs(directory, exist_ok=True)
        overlay = Overlay(list(reversed(record.layers)), upper, work)
        return Provisioned(rootfs, overlay, dict(record.env), record.working_dir, record.digest)

    def _copy(self, container_id: str, record: ImageRecord) -> Provisioned:
        rootfs = os.path.join(self.containers_dir, container_id, "rootfs")
        if os.path.lexists(rootfs):
            shutil.rmtree(rootfs)
        os.makedirs(rootfs)
        for layer in record.layers:
            apply_layer(layer, rootfs)
        return Provisioned(rootfs, None, dict(record.env), record.working_dir, record.digest)


def _source_key(source: ImageSource) -> str:
    """An image source's identity: it changes when the file is rewritten."""
    watched = os.path.join(source.path, "index.json") if source.kind == "oci" else source.path
    st = os.stat(watched)
    reference = str(source.reference) if source.reference is not None else ""
    return (
        f"{source.kind}:{os.path.realpath(source.path)}:{st.st_size}:{st.st_mtime_ns}:{reference}"
    )

"""Builds tiny container images for tests from /bin/busybox (Debian's busybox-static):
two layers, the second adding a marker file, deleting one file of the first (a
`.wh.` whiteout) and replacing a directory's contents (an opaque whiteout), packaged
as a plain rootfs directory, a `docker save` tarball (current or legacy layout) and an
OCI image layout (gzip layers)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

BUSYBOX = "/bin/busybox"
APPLETS = (
    "sh", "cat", "ls", "echo", "test", "touch", "env", "pwd", "id", "mkdir", "rm", "stat",
    "sleep", "true", "false", "grep", "wc", "readlink", "mount",
)  # fmt: skip
IMAGE_ENV = ("PATH=/bin:/usr/bin", "IMAGE_VAR=from-image")
WORKING_DIR = "/opt"


def need_busybox() -> None:
    if not os.path.isfile(BUSYBOX):
        pytest.skip("needs /bin/busybox (Debian package busybox-static; bin/test installs it)")


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **kind: object) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    if kind.get("dir"):
        info.type, info.mode = tarfile.DIRTYPE, int(str(kind.get("mode", 0o755)))
        tar.addfile(info)
    elif "symlink" in kind:
        info.type, info.linkname = tarfile.SYMTYPE, str(kind["symlink"])
        tar.addfile(info)
    elif "hardlink" in kind:
        info.type, info.linkname = tarfile.LNKTYPE, str(kind["hardlink"])
        tar.addfile(info)
    else:
        payload = data or b""
        info.size, info.mode = len(payload), int(str(kind.get("mode", 0o644)))
        tar.addfile(info, io.BytesIO(payload))


def layer_bytes(entries: list[tuple[str, dict[str, object]]]) -> bytes:
    """A layer tarball from (name, {data|dir|symlink|hardlink|mode}) entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, spec in entries:
            _add(tar, name, spec.get("data"), **{k: v for k, v in spec.items() if k != "data"})  # type: ignore[arg-type]
    return buffer.getvalue()


def base_layer() -> bytes:
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries: list[tuple[str, dict[str, object]]] = [
        ("bin", {"dir": True}),
        ("bin/busybox", {"data": busybox, "mode": 0o755}),
        ("etc", {"dir": True}),
        ("etc/doomed", {"data": b"to be whited out\n"}),
        ("etc/base", {"data": b"base layer\n"}),
        ("opt", {"dir": True}),
        ("opt/dir", {"dir": True}),
        ("opt/dir/old", {"data": b"hidden by an opaque whiteout\n"}),
        ("tmp", {"dir": True, "mode": 0o1777}),
    ]
    entries += [(f"bin/{applet}", {"symlink": "busybox"}) for applet in APPLETS]
    return layer_bytes(entries)


def top_layer() -> bytes:
    return layer_bytes(
        [
            ("etc", {"dir": True}),
            ("etc/marker", {"data": b"agora test image\n"}),
            ("etc/.wh.doomed", {"data": b""}),
            ("opt", {"dir": True}),
            ("opt/dir", {"dir": True}),
            ("opt/dir/.wh..wh..opq", {"data": b""}),
            ("opt/dir/new", {"data": b"new\n"}),
        ]
    )


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(layers: list[bytes]) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": list(IMAGE_ENV), "WorkingDir": WORKING_DIR, "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
    }
    return json.dumps(config).encode()


def rootfs_dir(path: Path) -> Path:
    """A plain root filesystem directory: both layers applied (whiteouts done)."""
    for layer in (base_layer(), top_layer()):
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            for info in tar:
                base = os.path.basename(info.name)
                if base.startswith(".wh."):
                    target = path / os.path.dirname(info.name)
                    if base == ".wh..wh..opq":
                        for child in target.iterdir():
                            shutil.rmtree(child) if child.is_dir() else child.unlink()
                    else:
                        (target / base[4:]).unlink()
                    continue
                tar.extract(info, path, filter="tar")
    return path


def docker_archive(
    path: Path,
    repo_tags: tuple[str, ...] = ("busybox:latest",),
    legacy: bool = False,
    layers: list[bytes] | None = None,
) -> Path:
    """A `docker save` tarball at `path`: manifest.json + config + <id>/layer.tar, or
    (legacy) only `repositories` and each layer's <id>/json parent chain."""
    layers = layers if layers is not None else [base_layer(), top_layer()]
    config = image_config(layers)
    ids = [hashlib.sha256(f"{i}:{sha256(x)}".encode()).hexdigest() for i, x in enumerate(layers)]
    with tarfile.open(path, "w") as tar:
        for i, (layer_id, layer) in enumerate(zip(ids, layers, strict=True)):
            _add(tar, layer_id, dir=True)
            _add(tar, f"{layer_id}/layer.tar", layer)
            meta: dict[str, object] = {"id": layer_id}
            if i:
                meta["parent"] = ids[i - 1]
            if i == len(layers) - 1:
                meta["config"] = json.loads(config)["config"]
            _add(tar, f"{layer_id}/json", json.dumps(meta).encode())
        repositories: dict[str, dict[str, str]] = {}
        for tag in repo_tags:
            name, _, version = tag.rpartition(":")
            repositories.setdefault(name, {})[version] = ids[-1]
        _add(tar, "repositories", json.dumps(repositories).encode())
        if not legacy:
            config_name = f"{hashlib.sha256(config).hexdigest()}.json"
            _add(tar, config_name, config)
            manifest = [
                {
                    "Config": config_name,
                    "RepoTags": list(repo_tags),
                    "Layers": [f"{i}/layer.tar" for i in ids],
                }
            ]
            _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = sha256(data)
    blob = layout / "blobs" / "sha256" / digest.partition(":")[2]
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def oci_layout(path: Path, layers: list[bytes] | None = None, diff_ids: bool = True) -> Path:
    """An OCI image layout directory with gzip-compressed layers, tagged 'latest'."""
    layers = layers if layers is not None else [base_layer(), top_layer()]
    path.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    config = image_config(layers)
    if not diff_ids:
        data = json.loads(config)
        del data["rootfs"]
        config = json.dumps(data).encode()
    layer_descriptors = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            **_blob(path, gzip.compress(layer, mtime=0)),
        }
        for layer in layers
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(path, config)},
        "layers": layer_descriptors,
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **_blob(path, json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index))
    return path

"""Reading images from disk into a plan the store can act on: which layers (with the
digest each is stored under and how to open its tarball) and the image config.

- `docker save` tarball: manifest.json (Config, Layers; the entry whose RepoTags match),
  else the legacy `repositories` file and each layer's `<id>/json` parent chain (what
  Mesos's local puller reads). Layers are stored under the config's rootfs.diff_ids
  (sha256 of each uncompressed layer tarball), else hashed while unpacking.
- OCI image layout directory: index.json -> (nested indexes ->) image manifest -> config
  and layer blobs; layers are stored under their diff_ids too (so an image saved both
  ways shares its layers), else under the blob's descriptor digest.
All reads here are blocking: the provisioner runs them in a thread."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from agora.agent.containerizer.image_store import Opener
from agora.core.container.images import (
    Descriptor,
    ImageConfig,
    ImageFormatError,
    ImageReference,
    image_config,
    is_index,
    legacy_layers,
    legacy_parent,
    member_path,
    oci_manifest,
    saved_image,
    select_manifest,
)


@dataclass(frozen=True)
class LayerSource:
    digest: str | None  # what the unpacked layer is stored under (None: hash it)
    opener: Opener
    compressed: bool = False  # `digest` is of the raw blob, not the uncompressed tarball


@dataclass(frozen=True)
class ImagePlan:
    layers: tuple[LayerSource, ...]  # bottom first
    config: ImageConfig


# ---------------------------------------------------------------------- docker save


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    wanted = member_path(name)
    for info in tar.getmembers():
        if member_path(info.name) == wanted:
            return info
    raise ImageFormatError(f"'{name}' is missing from the archive")


def _read_json(tar: tarfile.TarFile, name: str) -> Any:
    source = tar.extractfile(_member(tar, name))
    if source is None:
        raise ImageFormatError(f"'{name}' in the archive is not a file")
    try:
        return json.loads(source.read())
    except ValueError as error:
        raise ImageFormatError(f"'{name}' is not JSON: {error}") from error


def _has(tar: tarfile.TarFile, name: str) -> bool:
    try:
        _member(tar, name)
    except ImageFormatError:
        return False
    return True


def docker_archive_plan(path: str, reference: ImageReference | None) -> ImagePlan:
    """The layers and config of the image `reference` (None: the only one) in a
    `docker save` tarball."""
    try:
        with tarfile.open(path, "r:*") as tar:
            if _has(tar, "manifest.json"):
                saved = saved_image(_read_json(tar, "manifest.json"), reference)
                config = image_config(_read_json(tar, saved.config)) if saved.config else None
                names = list(saved.layers)
            else:
                repositories = _read_json(tar, "repositories")
                ids = legacy_layers(
                    repositories,
                    reference,
                    lambda layer: legacy_parent(_read_json(tar, f"{layer}/json")),
                )
                config = image_config(_read_json(tar, f"{ids[-1]}/json"))
                names = [f"{layer}/layer.tar" for layer in ids]
    except (OSError, tarfile.TarError) as error:
        raise ImageFormatError(f"cannot read '{path}': {error}") from error
    config = config or ImageConfig()
    diff_ids = config.diff_ids if len(config.diff_ids) == len(names) else ()
    layers = tuple(
        LayerSource(diff_ids[i] if diff_ids else None, _archive_opener(path, name))
        for i, name in enumerate(names)
    )
    return ImagePlan(layers, config)


def _archive_opener(path: str, name: str) -> Opener:
    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        with tarfile.open(path, "r:*") as tar:
            source = tar.extractfile(_member(tar, name))
            if source is None:
                raise ImageFormatError(f"layer '{name}' in '{path}' is not a file")
            yield source

    return opener


# ---------------------------------------------------------------------- OCI layout


def _blob_path(layout: str, blob: Descriptor) -> str:
    return os.path.join(layout, *blob.blob.split("/"))


def _read_blob(layout: str, blob: Descriptor) -> Any:
    try:
        with open(_blob_path(layout, blob), "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ImageFormatError(f"blob {blob.digest} is missing from '{layout}'") from None
    except ValueError as error:
        raise ImageFormatError(f"blob {blob.digest} is not JSON: {error}") from error


def oci_layout_plan(layout: str, tag: str | None = None) -> ImagePlan:
    """The image of an OCI image layout directory (see `select_manifest` for which)."""
    try:
        with open(os.path.join(layout, "index.json"), "rb") as f:
            index = json.load(f)
    except OSError as error:
        raise ImageFormatError(f"cannot read index.json: {error}") from error
    except ValueError as error:
        raise ImageFormatError(f"index.json is not JSON: {error}") from error
    machine = platform.machine()
    chosen = select_manifest(index, "index.json", tag, machine)
    data = _read_blob(layout, chosen)
    for _ in range(8):  # nested image indexes, bounded
        if not is_index(data):
            break
        chosen = select_manifest(data, f"index {chosen.digest}", None, machine)
        data = _read_blob(layout, chosen)
    manifest = oci_manifest(data, f"manifest {chosen.digest}")
    config = image_config(_read_blob(layout, manifest.config))
    diff_ids = config.diff_ids if len(config.diff_ids) == len(manifest.layers) else ()
    layers = []
    for i, blob in enumerate(manifest.layers):
        path = _blob_path(layout, blob)
        if not os.path.isfile(path):
            raise ImageFormatError(f"layer blob {blob.digest} is missing from '{layout}'")
        if diff_ids:
            layers.append(LayerSource(diff_ids[i], _file_opener(path)))
        else:
            layers.append(LayerSource(blob.digest, _file_opener(path), compressed=True))
    return ImagePlan(tuple(layers), config)


def _file_opener(path: str) -> Opener:
    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        with open(path, "rb") as f:
            yield f

    return opener

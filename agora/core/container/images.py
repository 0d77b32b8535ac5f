"""Container image metadata, parsed without touching files: image references (Mesos's
docker::spec::parseImageReference), `docker save` manifests (manifest.json, and the legacy
`repositories` + per-layer `json` parent chain), OCI image layouts (index.json, image
manifests, image indexes) and image configs (Env, WorkingDir). The agent's provisioner
reads the files and hands the decoded JSON here; everything here is pure so it is cheap to
test exhaustively."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Json = Mapping[str, Any]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"


class ImageFormatError(ValueError):
    """An image's metadata is missing or malformed: the message says which part."""


@dataclass(frozen=True)
class ImageReference:
    """[REGISTRY/]REPOSITORY[:TAG|@DIGEST], split the way Mesos does."""

    repository: str
    registry: str | None = None
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        """Mesos's stringify: the local puller looks for `<registry dir>/<this>.tar`."""
        name = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.digest:
            return f"{name}@{self.digest}"
        if self.tag:
            return f"{name}:{self.tag}"
        return name

    @property
    def qualified(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository


def parse_reference(text: str) -> ImageReference:
    """Mesos's parseImageReference: a digest after '@', a tag after the last ':' unless
    that part has a '/' (a registry port), a first component with '.', ':' or equal to
    'localhost' is a registry."""
    name = text.strip()
    if not name:
        raise ImageFormatError("empty image name")
    digest = None
    if "@" in name:
        parts = name.split("@")
        if len(parts) != 2:
            raise ImageFormatError(f"multiple '@' in image name '{text}'")
        name, digest = parts
    tag = None
    if ":" in name:
        parts = name.split(":")
        if "/" not in parts[-1]:
            tag = parts.pop()
            name = ":".join(parts)
    first, slash, rest = name.partition("/")
    registry = None
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    if not name:
        raise ImageFormatError(f"no repository in image name '{text}'")
    return ImageReference(name, registry, tag or None, digest or None)


def registry_archives(reference: ImageReference) -> list[str]:
    """Paths, relative to --docker_registry, of the tarball holding an image: Mesos's local
    puller looks for `<reference as written>.tar` only (so `busybox:latest` is
    `busybox:latest.tar`); a name with the default tag also finds `<repository>.tar`."""
    names = [f"{reference}.tar"]
    if reference.digest is None and reference.tag in (None, "latest"):
        for alias in (f"{reference.qualified}.tar", f"{reference.qualified}:latest.tar"):
            if alias not in names:
                names.append(alias)
    return names


# ---------------------------------------------------------------------- docker save


@dataclass(frozen=True)
class SavedImage:
    """One image of a `docker save` archive: member names inside the tarball."""

    config: str | None  # the image config json (None: legacy archive without one)
    layers: tuple[str, ...]  # layer tarballs, bottom first
    repo_tags: tuple[str, ...] = ()


def saved_image(manifest: object, reference: ImageReference | None) -> SavedImage:
    """Pick the image from a `docker save` manifest.json: the entry tagged `reference`
    (default tag latest), or the only entry."""
    if not isinstance(manifest, list) or not manifest:
        raise ImageFormatError("manifest.json is not a non-empty list")
    entries = [_saved_entry(entry, i) for i, entry in enumerate(manifest)]
    if reference is not None:
        wanted = {f"{name}:{reference.tag or 'latest'}" for name in _names(reference)}
        for entry in entries:
            if wanted & set(entry.repo_tags):
                return entry
    if len(entries) == 1:
        return entries[0]
    tags = sorted(t for e in entries for t in e.repo_tags)
    raise ImageFormatError(f"manifest.json has {len(entries)} images; tags: {tags}")


def _names(reference: ImageReference) -> list[str]:
    names = [reference.qualified]
    if reference.registry is None:
        names += [f"docker.io/{reference.repository}", f"docker.io/library/{reference.repository}"]
        names.append(f"library/{reference.repository}")
    return names


def _saved_entry(entry: object, index: int) -> SavedImage:
    if not isinstance(entry, Mapping):
        raise ImageFormatError(f"manifest.json[{index}] is not an object")
    layers = entry.get("Layers")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ImageFormatError(f"manifest.json[{index}].Layers is not a list of names")
    config = entry.get("Config")
    if config is not None and not isinstance(config, str):
        raise ImageFormatError(f"manifest.json[{index}].Config is not a name")
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list):
        raise ImageFormatError(f"manifest.json[{index}].RepoTags is not a list")
    for name in [*layers, *([config] if config else [])]:
        member_path(name)
    return SavedImage(config, tuple(layers), tuple(str(t) for t in tags))


def legacy_layers(
    repositories: object, reference: ImageReference | None, parent_of: Callable[[str], str | None]
) -> list[str]:
    """Mesos's local puller: the top layer id from `repositories` (repository, then
    registry/repository; tag default latest), then each layer's `parent` down to the
    base. Returns layer ids bottom first; `parent_of(id)` reads `<id>/json`."""
    if not isinstance(repositories, Mapping) or not repositories:
        raise ImageFormatError("'repositories' is not a non-empty object")
    if reference is None:
        if len(repositories) != 1:
            raise ImageFormatError("'repositories' names several repositories")
        repository = next(iter(repositories.values()))
        tag = "latest" if isinstance(repository, Mapping) and "latest" in repository else None
    else:
        repository = None
        for name in _names(reference):
            repository = repositories.get(name)
            if repository is not None:
                break
        if repository is None:
            raise ImageFormatError(
                f"Repository '{reference.repository}' does not exist in 'repositories'"
            )
        tag = reference.tag or "latest"
    if not isinstance(repository, Mapping):
        raise ImageFormatError("'repositories' entry is not an object")
    if tag is None:
        if len(repository) != 1:
            raise ImageFormatError("'repositories' has several tags and none is 'latest'")
        tag = next(iter(repository))
    top = repository.get(tag)
    if not isinstance(top, str) or not top:
        raise ImageFormatError(f"Layer id '{tag}' is not found")
    layers = [top]
    parent = parent_of(top)
    while parent:
        if parent in layers or len(layers) > 1000:
            raise ImageFormatError(f"layer '{parent}' is its own ancestor")
        layers.insert(0, parent)
        parent = parent_of(parent)
    return layers


def legacy_parent(layer_json: object) -> str | None:
    if not isinstance(layer_json, Mapping):
        raise ImageFormatError("a layer's json is not an object")
    parent = layer_json.get("parent")
    if parent in (None, ""):
        return None
    if not isinstance(parent, str):
        raise ImageFormatError("a layer's 'parent' is not a string")
    return parent


# ---------------------------------------------------------------------- OCI


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] = field(default_factory=dict)

    @property
    def blob(self) -> str:
        """The blob's path inside an OCI layout: blobs/<algorithm>/<hex>."""
        algorithm, _, encoded = self.digest.partition(":")
        return f"blobs/{algorithm}/{encoded}"


def descriptor(data: object, where: str) -> Descriptor:
    if not isinstance(data, Mapping):
        raise ImageFormatError(f"{where} is not an object")
    digest = data.get("digest")
    if not isinstance(digest, str) or not _valid_digest(digest):
        raise ImageFormatError(f"{where}.digest '{digest}' is not <algorithm>:<hex>")
    size = data.get("size", -1)
    annotations = data.get("annotations") or {}
    platform = data.get("platform") or {}
    return Descriptor(
        str(data.get("mediaType", "")),
        digest,
        size if isinstance(size, int) else -1,
        annotations if isinstance(annotations, Mapping) else {},
        platform if isinstance(platform, Mapping) else {},
    )


def _valid_digest(digest: str) -> bool:
    algorithm, colon, encoded = digest.partition(":")
    return (
        bool(colon)
        and algorithm in ("sha256", "sha512")
        and bool(encoded)
        and all(c in "0123456789abcdef" for c in encoded)
    )


def select_manifest(index: object, where: str, tag: str | None, machine: str) -> Descriptor:
    """The manifest of an OCI index to use: the one whose ref.name annotation is `tag`
    (default: the only one, else 'latest', else the first), and among platform variants
    the one for this machine's architecture on linux."""
    if not isinstance(index, Mapping):
        raise ImageFormatError(f"{where} is not an object")
    raw = index.get("manifests")
    if not isinstance(raw, list) or not raw:
        raise ImageFormatError(f"{where}.manifests is not a non-empty list")
    manifests = [descriptor(m, f"{where}.manifests[{i}]") for i, m in enumerate(raw)]
    if tag is not None:
        named = [m for m in manifests if m.annotations.get(REF_NAME) == tag]
        if not named:
            refs = sorted(str(m.annotations.get(REF_NAME)) for m in manifests)
            raise ImageFormatError(f"{where} has no manifest named '{tag}' (names: {refs})")
        manifests = named
    elif len(manifests) > 1:
        latest = [m for m in manifests if m.annotations.get(REF_NAME) == "latest"]
        manifests = latest or manifests
    return _for_platform(manifests, machine)


def _for_platform(manifests: Sequence[Descriptor], machine: str) -> Descriptor:
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    for candidate in manifests:
        platform = candidate.platform
        if platform.get("os", "linux") == "linux" and platform.get("architecture", arch) == arch:
            return candidate
    return manifests[0]


@dataclass(frozen=True)
class OciManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]  # bottom first


def oci_manifest(data: object, where: str) -> OciManifest:
    if not isinstance(data, Mapping):
        raise ImageFormatError(f"{where} is not an object")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ImageFormatError(f"{where}.layers is not a non-empty list")
    return OciManifest(
        descriptor(data.get("config"), f"{where}.config"),
        tuple(descriptor(layer, f"{where}.layers[{i}]") for i, layer in enumerate(layers)),
    )


def is_index(data: object) -> bool:
    """An image index (nested in an OCI layout's index.json), not an image manifest."""
    if not isinstance(data, Mapping):
        return False
    return data.get("mediaType") in INDEX_TYPES or ("manifests" in data and "layers" not in data)


# ---------------------------------------------------------------------- config


@dataclass(frozen=True)
class ImageConfig:
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    diff_ids: tuple[str, ...] = ()  # sha256 of each uncompressed layer tarball, bottom first


def image_config(data: object) -> ImageConfig:
    """Env and WorkingDir of an image config (docker and OCI share `config`; legacy docker
    layer json has them under `config` too)."""
    if not isinstance(data, Mapping):
        raise ImageFormatError("the image config is not an object")
    config = data.get("config") or data.get("container_config") or {}
    if not isinstance(config, Mapping):
        raise ImageFormatError("the image config's 'config' is not an object")
    env: dict[str, str] = {}
    raw_env = config.get("Env") or []
    if not isinstance(raw_env, list):
        raise ImageFormatError("the image config's Env is not a list")
    for item in raw_env:
        if isinstance(item, str) and "=" in item:
            key, _, value = item.partition("=")
            if key:
                env[key] = value
    working_dir = config.get("WorkingDir")
    rootfs = data.get("rootfs")
    raw_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
    diff_ids: tuple[str, ...] = ()
    if isinstance(raw_ids, list) and all(isinstance(d, str) and _valid_digest(d) for d in raw_ids):
        diff_ids = tuple(raw_ids)
    return ImageConfig(
        env, working_dir if isinstance(working_dir, str) and working_dir else None, diff_ids
    )


# ---------------------------------------------------------------------- layer members


def member_path(name: str) -> str:
    """A tar member name made relative and checked to stay inside the layer: absolute
    names lose their '/', names climbing out with '..' are refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageFormatError(f"member '{name}' escapes the layer")
    return "/".join(parts) or "."


def whiteout(name: str) -> tuple[str, str] | None:
    """('opaque', dir) for `dir/.wh..wh..opq`, ('delete', path) for `dir/.wh.path`,
    None for an ordinary member."""
    head, _, base = name.rpartition("/")
    if base == OPAQUE_WHITEOUT:
        return "opaque", head or "."
    if base.startswith(WHITEOUT_PREFIX):
        rest = base[len(WHITEOUT_PREFIX) :]
        return "delete", f"{head}/{rest}" if head else rest
    return None

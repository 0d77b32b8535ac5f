"""Images without a Docker daemon: reference and manifest parsing, the layer store
(unpacked once, safely, whiteouts in both forms), both provisioner backends and the
filesystem/linux isolator's launch plan."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from agora.agent.containerizer.filesystem import LinuxFilesystemIsolator
from agora.agent.containerizer.image_store import LayerStore, apply_layer
from agora.agent.containerizer.model import Container, ContainerError, Provisioned
from agora.agent.containerizer.options import ContainerizerOptions
from agora.agent.containerizer.provisioner import Provisioner
from agora.core.container.config import ContainerConfig
from agora.core.container.images import (
    ImageFormatError,
    ImageReference,
    image_config,
    legacy_layers,
    member_path,
    parse_reference,
    registry_archives,
    saved_image,
    select_manifest,
    whiteout,
)
from agora.core.resource_text import parse_resources
from tests import image_kit

ROOT = os.geteuid() == 0


def image(name: str) -> dict[str, Any]:
    return {"type": "DOCKER", "docker": {"name": name}}


def options(tmp: Path, **kw: Any) -> ContainerizerOptions:
    return ContainerizerOptions(work_dir=str(tmp / "work"), **kw)


# ---------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", ImageReference("busybox")),
        ("busybox:latest", ImageReference("busybox", tag="latest")),
        ("library/busybox:1.36", ImageReference("library/busybox", tag="1.36")),
        ("localhost:5000/a/b", ImageReference("a/b", registry="localhost:5000")),
        ("reg.io/a/b:t", ImageReference("a/b", registry="reg.io", tag="t")),
        ("reg.io/a@sha256:ab", ImageReference("a", registry="reg.io", digest="sha256:ab")),
    ],
)
def test_references_split_like_mesos(text: str, expected: ImageReference) -> None:
    assert parse_reference(text) == expected
    assert str(parse_reference(text)) == text


def test_registry_archive_names_follow_the_local_puller() -> None:
    assert registry_archives(parse_reference("busybox")) == ["busybox.tar", "busybox:latest.tar"]
    assert registry_archives(parse_reference("busybox:latest")) == [
        "busybox:latest.tar",
        "busybox.tar",
    ]
    assert registry_archives(parse_reference("busybox:1.36")) == ["busybox:1.36.tar"]


def test_bad_references() -> None:
    for text in ("", "a@b@c", ":tag"):
        with pytest.raises(ImageFormatError):
            parse_reference(text)


# ---------------------------------------------------------------------- manifests


def test_docker_save_manifest_picks_the_tagged_image() -> None:
    manifest = [
        {"Config": "a.json", "RepoTags": ["busybox:1"], "Layers": ["1/layer.tar"]},
        {"Config": "b.json", "RepoTags": ["busybox:latest"], "Layers": ["2/layer.tar"]},
    ]
    assert saved_image(manifest, parse_reference("busybox")).config == "b.json"
    assert saved_image(manifest, parse_reference("busybox:1")).layers == ("1/layer.tar",)
    with pytest.raises(ImageFormatError, match="2 images"):
        saved_image(manifest, None)
    assert saved_image(manifest[:1], None).config == "a.json"


def test_docker_save_manifest_refuses_escaping_names() -> None:
    with pytest.raises(ImageFormatError, match="escapes"):
        saved_image([{"Config": "c.json", "Layers": ["../x/layer.tar"]}], None)
    with pytest.raises(ImageFormatError, match="Layers"):
        saved_image([{"Config": "c.json"}], None)


def test_legacy_repositories_walk_the_parent_chain() -> None:
    parents = {"top": "mid", "mid": "base", "base": None}
    repositories = {"busybox": {"latest": "top", "old": "mid"}}
    ref = parse_reference("busybox")
    assert legacy_layers(repositories, ref, parents.get) == ["base", "mid", "top"]
    old = parse_reference("busybox:old")
    assert legacy_layers(repositories, old, parents.get) == ["base", "mid"]
    with pytest.raises(ImageFormatError, match="does not exist"):
        legacy_layers(repositories, parse_reference("other"), parents.get)
    with pytest.raises(ImageFormatError, match="not found"):
        legacy_layers(repositories, parse_reference("busybox:nope"), parents.get)


def _descriptor(digest: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": "m", "digest": f"sha256:{digest}", "size": 1, **extra}


def test_oci_index_selection() -> None:
    named = {"org.opencontainers.image.ref.name": "latest"}
    index = {
        "manifests": [
            _descriptor("aa", annotations={"org.opencontainers.image.ref.name": "v1"}),
            _descriptor("bb", annotations=named),
        ]
    }
    assert select_manifest(index, "index.json", None, "x86_64").digest == "sha256:bb"
    assert select_manifest(index, "index.json", "v1", "x86_64").digest == "sha256:aa"
    with pytest.raises(ImageFormatError, match="no manifest named 'v2'"):
        select_manifest(index, "index.json", "v2", "x86_64")
    arm = _descriptor("cc", platform={"os": "linux", "architecture": "arm64"})
    amd = _descriptor("dd", platform={"os": "linux", "architecture": "amd64"})
    assert select_manifest({"manifests": [arm, amd]}, "i", None, "x86_64").digest == "sha256:dd"
    assert select_manifest({"manifests": [arm, amd]}, "i", None, "aarch64").digest == "sha256:cc"
    with pytest.raises(ImageFormatError, match="digest"):
        select_manifest({"manifests": [{"digest": "md5:zz"}]}, "i", None, "x86_64")


def test_image_config_env_and_working_dir() -> None:
    config = image_config(
        {
            "config": {"Env": ["PATH=/bin", "A=b=c", "junk"], "WorkingDir": "/w"},
            "rootfs": {"diff_ids": ["sha256:ab"]},
        }
    )
    assert config.env == {"PATH": "/bin", "A": "b=c"}
    assert config.working_dir == "/w"
    assert config.diff_ids == ("sha256:ab",)
    assert image_config({}).env == {}


def test_member_names_and_whiteouts() -> None:
    assert member_path("/etc/x") == "etc/x"
    assert member_path("./a//b/") == "a/b"
    with pytest.raises(ImageFormatError):
        member_path("a/../../b")
    assert whiteout("etc/.wh.doomed") == ("delete", "etc/doomed")
    assert whiteout(".wh.top") == ("delete", "top")
    assert whiteout("opt/dir/.wh..wh..opq") == ("opaque", "opt/dir")
    assert whiteout("etc/passwd") is None


# ---------------------------------------------------------------------- store


def _opener(data: bytes, calls: list[int]) -> Any:
    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        calls.append(1)
        yield io.BytesIO(data)

    return opener


def test_concurrent_requests_unpack_a_layer_once(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "store"))
    layer = image_kit.layer_bytes([("a", {"data": b"x"})])
    calls: list[int] = []
    digest = image_kit.sha256(layer)

    async def many() -> list[str]:
        return await asyncio.gather(
            *(store.ensure(digest, _opener(layer, calls)) for _ in range(5))
        )

    assert asyncio.run(many()) == [digest] * 5
    assert calls == [1]
    assert (Path(store.rootfs(digest)) / "a").read_bytes() == b"x"
    assert os.listdir(store.staging_dir) == []


def test_a_layer_must_hash_to_its_digest(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "store"))
    layer = image_kit.layer_bytes([("a", {"data": b"x"})])
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ImageFormatError, match="hashes to"):
        asyncio.run(store.ensure(wrong, _opener(layer, [])))
    assert not store.has(wrong)
    assert os.listdir(store.staging_dir) == []


@pytest.mark.parametrize(
    "entries",
    [
        [("../evil", {"data": b"x"})],
        [("link", {"symlink": "/tmp"}), ("link/evil", {"data": b"x"})],
        [("hard", {"hardlink": "../../etc/passwd"})],
    ],
    ids=["dotdot", "through-symlink", "hardlink-out"],
)
def test_escaping_layers_are_refused(tmp_path: Path, entries: Any) -> None:
    store = LayerStore(str(tmp_path / "store"))
    layer = image_kit.layer_bytes(entries)
    with pytest.raises(ImageFormatError):
        asyncio.run(store.ensure(None, _opener(layer, [])))
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()
    assert os.listdir(store.layers_dir) == []


def test_absolute_member_names_land_inside(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "store"))
    layer = image_kit.layer_bytes([("/abs/file", {"data": b"in"})])
    digest = asyncio.run(store.ensure(None, _opener(layer, [])))
    assert digest == image_kit.sha256(layer)
    assert (Path(store.rootfs(digest)) / "abs" / "file").read_bytes() == b"in"


@pytest.mark.skipif(not ROOT, reason="overlayfs whiteouts need root (mknod, trusted xattrs)")
def test_overlay_whiteouts_in_the_store(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "store"))
    top = image_kit.top_layer()
    digest = asyncio.run(store.ensure(None, _opener(top, [])))
    rootfs = Path(store.rootfs(digest))
    doomed = os.lstat(rootfs / "etc" / "doomed")
    assert stat.S_ISCHR(doomed.st_mode) and doomed.st_rdev == 0
    assert os.getxattr(rootfs / "opt" / "dir", "trusted.overlay.opaque") == b"y"
    assert not list(rootfs.rglob(".wh.*"))


@pytest.mark.parametrize("overlay_form", [True, False], ids=["overlay-form", "aufs-form"])
def test_copy_applies_whiteouts(tmp_path: Path, overlay_form: bool) -> None:
    image_kit.need_busybox()
    if overlay_form and not ROOT:
        pytest.skip("overlayfs whiteouts need root (mknod, trusted xattrs)")
    store = LayerStore(str(tmp_path / "store"))
    store.overlay_whiteouts = overlay_form
    target = tmp_path / "rootfs"
    target.mkdir()
    for layer in (image_kit.base_layer(), image_kit.top_layer()):
        apply_layer(store.rootfs(asyncio.run(store.ensure(None, _opener(layer, [])))), str(target))
    assert (target / "etc" / "marker").exists() and (target / "etc" / "base").exists()
    assert not os.path.lexists(target / "etc" / "doomed")
    assert os.listdir(target / "opt" / "dir") == ["new"]
    assert os.readlink(target / "bin" / "sh") == "busybox"
    assert not list(target.rglob(".wh.*"))


# ---------------------------------------------------------------------- provisioner


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    image_kit.need_busybox()
    directory = tmp_path / "registry"
    directory.mkdir()
    image_kit.docker_archive(directory / "busybox.tar")
    return directory


def test_two_images_sharing_a_layer_unpack_it_once(tmp_path: Path, registry: Path) -> None:
    other_top = image_kit.layer_bytes([("other", {"data": b"o"})])
    image_kit.oci_layout(tmp_path / "oci", [image_kit.base_layer(), other_top])
    provisioner = Provisioner(options(tmp_path, docker_registry=str(registry)))

    async def both() -> list[Provisioned]:
        return list(
            await asyncio.gather(
                provisioner.provision("c1", image("busybox")),
                provisioner.provision("c2", image(str(tmp_path / "oci"))),
            )
        )

    first, second = asyncio.run(both())
    assert len(os.listdir(provisioner.store.layers_dir)) == 3
    assert first.env["IMAGE_VAR"] == "from-image" and first.working_dir == "/opt"
    if first.overlay is not None and second.overlay is not None:
        assert first.overlay.lower[-1] == second.overlay.lower[-1]  # the shared base


@pytest.mark.parametrize("backend", ["overlay", "copy"])
def test_every_kind_of_image(tmp_path: Path, registry: Path, backend: str) -> None:
    if backend == "overlay" and not ROOT:
        pytest.skip("the overlay backend needs root")
    legacy = image_kit.docker_archive(tmp_path / "legacy.tar", legacy=True)
    oci = image_kit.oci_layout(tmp_path / "oci", diff_ids=False)
    rootfs = image_kit.rootfs_dir(tmp_path / "plain")
    opts = options(tmp_path, docker_registry=str(registry), image_provisioner_backend=backend)
    provisioner = Provisioner(opts)
    names = ["busybox", "busybox:latest", str(legacy), str(oci), str(rootfs)]
    for i, name in enumerate(names):
        result = asyncio.run(provisioner.provision(f"c{i}", image(name)))
        base = Path(opts.provisioner_dir) / "containers" / f"c{i}"
        assert result.rootfs == str(base / "rootfs")
        if backend == "copy":
            assert result.overlay is None
            assert (base / "rootfs" / "etc" / "marker").exists()
            assert not (base / "rootfs" / "etc" / "doomed").exists()
        else:
            assert result.overlay is not None
            assert result.overlay.upper == str(base / "upper")
            top = Path(result.overlay.lower[0])
            assert (top / "etc" / "marker").exists()
            if name == str(rootfs):
                assert result.overlay.lower == [str(rootfs)]
        provisioner.destroy(f"c{i}")
        assert not base.exists()
    assert (rootfs / "etc" / "marker").exists()  # a rootfs image is never modified


def test_stored_images_are_read_again_only_when_rewritten(tmp_path: Path, registry: Path) -> None:
    provisioner = Provisioner(options(tmp_path, docker_registry=str(registry)))
    asyncio.run(provisioner.provision("c1", image("busybox")))
    again = Provisioner(options(tmp_path, docker_registry=str(registry)))
    assert asyncio.run(again.provision("c2", image("busybox"))).env["IMAGE_VAR"] == "from-image"
    assert len(os.listdir(again.images_dir)) == 1  # the record on disk was reused
    tagged = image_kit.docker_archive(registry / "busybox.tar", layers=[image_kit.base_layer()])
    os.utime(tagged, ns=(1, 1))
    result = asyncio.run(again.provision("c3", image("busybox")))
    assert len(os.listdir(again.images_dir)) == 2
    assert result.overlay is None or len(result.overlay.lower) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (image("nope"), "Failed to provision image 'nope': Failed to find archive"),
        (image("/does/not/exist"), "'/does/not/exist' does not exist"),
        ({"type": "APPC", "appc": {"name": "x"}}, "image type APPC is not supported"),
        ({"type": "DOCKER", "docker": {}}, "docker.name is missing"),
    ],
)
def test_bad_images_fail_naming_them(
    tmp_path: Path, registry: Path, spec: dict[str, Any], message: str
) -> None:
    provisioner = Provisioner(options(tmp_path, docker_registry=str(registry)))
    with pytest.raises(ContainerError, match=message):
        asyncio.run(provisioner.provision("c1", spec))


def test_a_corrupt_archive_fails(tmp_path: Path, registry: Path) -> None:
    (registry / "broken.tar").write_bytes(b"not a tarball")
    provisioner = Provisioner(options(tmp_path, docker_registry=str(registry)))
    with pytest.raises(ContainerError, match="Failed to provision image 'broken'"):
        asyncio.run(provisioner.provision("c1", image("broken")))


# ---------------------------------------------------------------------- isolator


def container(tmp: Path, info: dict[str, Any] | None, task_dir: str | None = None) -> Container:
    directory = tmp / "run"
    sandbox = directory / "tasks" / task_dir if task_dir else directory
    sandbox.mkdir(parents=True, exist_ok=True)
    res = parse_resources("cpus:1;mem:32")
    config = ContainerConfig(
        "c1", "f1", "e1", "t1", str(directory), str(sandbox), res, container_info=info
    )
    return Container("c1", config, res)


def test_no_image_no_volumes_no_namespace(tmp_path: Path) -> None:
    isolator = LinuxFilesystemIsolator(options(tmp_path))
    assert isolator.prepare(container(tmp_path, None)) is None
    assert isolator.prepare(container(tmp_path, {"type": "MESOS"})) is None


def test_image_launch_plan(tmp_path: Path) -> None:
    isolator = LinuxFilesystemIsolator(options(tmp_path))
    volumes = [
        {"container_path": "/data", "host_path": str(tmp_path), "mode": "RO"},
        {
            "container_path": "scratch",
            "mode": "RW",
            "source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "PARENT", "path": "s"}},
        },
    ]
    c = container(tmp_path, {"type": "MESOS", "volumes": volumes}, task_dir="t1")
    c.provisioned = Provisioned("/rootfs", None, {"PATH": "/bin", "MESOS_X": "no"}, "/w")
    info = isolator.prepare(c)
    assert info is not None
    assert info.namespaces == ["mount"] and info.rootfs == "/rootfs" and info.mount_proc
    assert info.working_directory == "/mnt/mesos/sandbox/tasks/t1"
    assert info.env == {"PATH": "/bin", "MESOS_SANDBOX": "/mnt/mesos/sandbox/tasks/t1"}
    by_target = {m.target: m for m in info.mounts}
    assert by_target["/mnt/mesos/sandbox"].source == str(tmp_path / "run")
    assert by_target["/data"].read_only and by_target["/data"].source == str(tmp_path)
    scratch = by_target["/mnt/mesos/sandbox/tasks/t1/scratch"]
    assert scratch.source == str(tmp_path / "run" / "s") and not scratch.read_only
    assert (tmp_path / "run" / "s").is_dir()
    assert by_target["/dev"].fstype == "tmpfs" and "/dev/null" in by_target
    targets = [m.target for m in info.mounts]
    assert targets.index("/dev") < targets.index("/dev/null")


def test_volumes_without_an_image(tmp_path: Path) -> None:
    isolator = LinuxFilesystemIsolator(options(tmp_path))
    (tmp_path / "host").mkdir()
    volumes = [
        {"container_path": str(tmp_path / "host"), "host_path": "/etc", "mode": "RO"},
        {"container_path": "etc", "source": {"type": "HOST_PATH", "host_path": {"path": "/etc"}}},
    ]
    info = isolator.prepare(container(tmp_path, {"type": "MESOS", "volumes": volumes}))
    assert info is not None and info.rootfs is None and info.namespaces == ["mount"]
    assert [(m.source, m.target, m.read_only) for m in info.mounts] == [
        ("/etc", str(tmp_path / "host"), True),
        ("/etc", str(tmp_path / "run" / "etc"), False),
    ]
    assert (tmp_path / "run" / "etc").is_dir()


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"host_path": "/etc"}, r"volumes\[0\].container_path"),
        ({"container_path": "/x", "host_path": "/etc", "mode": "RX"}, r"volumes\[0\].mode"),
        ({"container_path": "/x"}, "neither host_path nor source"),
        (
            {"container_path": "/x", "source": {"type": "HOST_PATH", "host_path": {"path": "r"}}},
            r"source.host_path.path 'r' is not absolute",
        ),
        (
            {
                "container_path": "/x",
                "source": {"type": "SANDBOX_PATH", "sandbox_path": {"path": "../up"}},
            },
            "climbs out",
        ),
        ({"container_path": "/x", "source": {"type": "SECRET"}}, "SECRET is not supported"),
        ({"container_path": "/nope-" + "z" * 8, "host_path": "/etc"}, "does not exist"),
        ({"container_path": "/tmp", "host_path": "/no/such/path"}, "host path '/no/such/path'"),
    ],
)
def test_bad_volumes_name_the_field(tmp_path: Path, volume: dict[str, Any], field: str) -> None:
    isolator = LinuxFilesystemIsolator(options(tmp_path))
    with pytest.raises(ContainerError, match=field):
        isolator.prepare(container(tmp_path, {"type": "MESOS", "volumes": [volume]}))


def test_recover_removes_leftover_container_dirs(tmp_path: Path) -> None:
    opts = options(tmp_path)
    for name in ("kept", "gone"):
        (Path(opts.provisioner_dir) / "containers" / name / "upper").mkdir(parents=True)
    LinuxFilesystemIsolator(opts).recover(["kept"])
    assert os.listdir(Path(opts.provisioner_dir) / "containers") == ["kept"]

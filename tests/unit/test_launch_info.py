"""LaunchInfo: the JSON that crosses the supervisor socket, how isolators' contributions
merge, and what the launcher decides from it."""

from __future__ import annotations

from agora.agent import launcher
from agora.agent.containerizer.launch_info import LaunchInfo, Mount, Overlay
from agora.agent.containerizer.namespaces import PidNamespaceIsolator
from agora.agent.containerizer.options import ContainerizerOptions


def full_info() -> LaunchInfo:
    return LaunchInfo(
        cgroups=["/sys/fs/cgroup/pids/a"],
        namespaces=["pid", "mount"],
        mount_proc=True,
        rootfs="/r",
        overlay=Overlay(lower=["/l1", "/l2"], upper="/u", work="/w"),
        mounts=[
            Mount("/sandbox", "/mnt/mesos/sandbox"),
            Mount("tmpfs", "/tmp", fstype="tmpfs", options="size=1m", read_only=True),
        ],
        working_directory="/mnt/mesos/sandbox",
        uid=65534,
        gid=65534,
        groups=[65534],
        env={"A": "1"},
    )


def test_json_round_trip_keeps_everything() -> None:
    info = full_info()
    assert LaunchInfo.from_json(info.to_json()) == info


def test_empty_fields_are_left_out_of_the_json() -> None:
    assert LaunchInfo().to_json() == {}
    assert LaunchInfo(cgroups=["/c"]).to_json() == {"cgroups": ["/c"]}


def test_merge_adds_lists_once_and_later_scalars_win() -> None:
    info = LaunchInfo(cgroups=["/a"], namespaces=["pid"], uid=1)
    info.merge(LaunchInfo(cgroups=["/a", "/b"], namespaces=["pid", "mount"], uid=2))
    info.merge(None)
    assert info.cgroups == ["/a", "/b"]
    assert info.namespaces == ["pid", "mount"]
    assert info.uid == 2


def test_the_pid_namespace_isolator_asks_for_pid_mount_and_proc() -> None:
    isolator = PidNamespaceIsolator(ContainerizerOptions(work_dir="/tmp/x"))
    info = isolator.prepare(None)  # type: ignore[arg-type]  # it does not look at it
    assert info == LaunchInfo(namespaces=["pid", "mount"], mount_proc=True)


def test_only_cgroups_take_the_short_path_in_the_child() -> None:
    assert not launcher._needs_setup(LaunchInfo(cgroups=["/c"]))
    for info in (
        LaunchInfo(namespaces=["mount"]),
        LaunchInfo(mount_proc=True),
        LaunchInfo(mounts=[Mount("/a", "/b")]),
        LaunchInfo(join_namespaces_of=12),
        LaunchInfo(uid=1),
        LaunchInfo(working_directory="/w"),
    ):
        assert launcher._needs_setup(info), info


def test_a_pid_namespace_alone_needs_no_mount_namespace() -> None:
    assert not launcher._needs_mount_namespace(LaunchInfo(namespaces=["pid"]))
    assert launcher._needs_mount_namespace(LaunchInfo(rootfs="/r"))


def test_overlay_options_list_the_layers_top_first() -> None:
    assert launcher._overlay_data(["/l1", "/l2", "/u", "/w"]) == (
        "lowerdir=/l1:/l2,upperdir=/u,workdir=/w"
    )

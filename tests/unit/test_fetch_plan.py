"""The fetcher's plan: every URI entry checked before any byte moves (bad fields named,
schemes, output paths kept inside the sandbox, archive kinds by suffix) and the cache
ledger's reservations and least-recently-used eviction."""

from __future__ import annotations

from typing import Any

import pytest

from agora.core.container.fetch import (
    CacheLedger,
    Extraction,
    FetchPlanError,
    Scheme,
    archive_kind,
    cache_key,
    plan_fetch,
    plan_uri,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.tar", Extraction.TAR),
        ("a.tar.gz", Extraction.TAR),
        ("a.tgz", Extraction.TAR),
        ("a.tar.bz2", Extraction.TAR),
        ("a.tbz2", Extraction.TAR),
        ("a.tar.xz", Extraction.TAR),
        ("A.TXZ", Extraction.TAR),
        ("a.zip", Extraction.ZIP),
        ("notes.txt.gz", Extraction.GZIP),
        ("a.txt", None),
        ("a.tar.gz.sig", None),
        (".gz", None),
        ("tgz", None),
    ],
)
def test_archive_kind_by_suffix(name: str, kind: Extraction | None) -> None:
    assert archive_kind(name) == kind


def test_http_uri_lands_under_its_basename_and_is_extracted_by_default() -> None:
    item = plan_uri(0, {"value": "http://h:80/dir/app.tar.gz?sig=1#frag"})
    assert item.scheme is Scheme.HTTP and item.location == "http://h:80/dir/app.tar.gz?sig=1#frag"
    assert item.output_path == "app.tar.gz"
    assert item.extraction is Extraction.TAR
    assert not item.executable and not item.cache


def test_executable_or_extract_false_keep_the_archive_as_is() -> None:
    assert plan_uri(0, {"value": "https://h/a.zip", "executable": True}).extraction is None
    assert plan_uri(0, {"value": "https://h/a.zip", "extract": False}).extraction is None
    assert plan_uri(0, {"value": "https://h/a.zip", "extract": None}).extraction is Extraction.ZIP


def test_output_file_renames_into_a_subdirectory_and_decides_extraction() -> None:
    item = plan_uri(0, {"value": "http://h/download?id=3", "output_file": "./sub//dir/x.tgz"})
    assert item.output_path == "sub/dir/x.tgz" and item.extraction is Extraction.TAR
    gz = plan_uri(0, {"value": "http://h/notes.txt.gz", "output_file": "d/n.log.gz"})
    assert gz.extraction is Extraction.GZIP and gz.gunzipped_name == "n.log"


@pytest.mark.parametrize(
    ("output_file", "message"),
    [
        ("/etc/passwd", "must be relative to the sandbox"),
        ("../x", "must not leave the sandbox"),
        ("a/../../x", "must not leave the sandbox"),
        ("dir/", "must name a file"),
        (".", "must name a file"),
        ("", "must be a non-empty string"),
        (3, "must be a non-empty string"),
    ],
)
def test_bad_output_file_is_refused_by_name(output_file: Any, message: str) -> None:
    with pytest.raises(FetchPlanError, match=r"uris\[0\]\.output_file") as error:
        plan_uri(0, {"value": "http://h/x", "output_file": output_file})
    assert message in str(error.value)


def test_local_paths_file_uris_and_frameworks_home() -> None:
    absolute = plan_uri(0, {"value": "/opt/./b//f.bin"})
    assert absolute.scheme is Scheme.FILE and absolute.location == "/opt/b/f.bin"
    assert absolute.output_path == "f.bin"
    file_uri = plan_uri(0, {"value": "file:///srv/pkg.tar"})
    assert file_uri.location == "/srv/pkg.tar" and file_uri.extraction is Extraction.TAR
    assert plan_uri(0, {"value": "file://localhost/srv/x"}).location == "/srv/x"
    relative = plan_uri(0, {"value": "bin/tool"}, frameworks_home="/home/fw/")
    assert relative.location == "/home/fw/bin/tool" and relative.output_path == "tool"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://h/x", "unsupported scheme 'ftp'"),
        ("hdfs://nn/x", "unsupported scheme 'hdfs'"),
        ("file://otherhost/x", "must be file:///<absolute path>"),
        ("http:///x", "has no host"),
        ("http://h/", "names no file; set output_file"),
        ("relative/x", "no --frameworks-home"),
    ],
)
def test_unusable_values_are_refused(uri: str, message: str) -> None:
    with pytest.raises(FetchPlanError, match=r"uris\[0\]\.value") as error:
        plan_uri(0, {"value": uri})
    assert message in str(error.value)


def test_bad_uri_objects_name_the_index_and_field() -> None:
    cases: list[tuple[object, str]] = [
        ("http://h/x", r"uris\[1\] must be an object"),
        ({}, r"uris\[1\]\.value must be a non-empty string"),
        ({"value": ""}, r"uris\[1\]\.value must be a non-empty string"),
        ({"value": 7}, r"uris\[1\]\.value must be a non-empty string"),
        ({"value": "http://h/x", "executable": "yes"}, r"uris\[1\]\.executable must be a boolean"),
        ({"value": "http://h/x", "extract": 1}, r"uris\[1\]\.extract must be a boolean"),
        ({"value": "http://h/x", "cache": "true"}, r"uris\[1\]\.cache must be a boolean"),
    ]
    for bad, message in cases:
        with pytest.raises(FetchPlanError, match=message):
            plan_fetch([{"value": "http://h/ok"}, bad])


def test_cache_key_separates_users_and_uris_and_is_a_file_name() -> None:
    key = cache_key("1000", "http://h/x")
    assert key == cache_key("1000", "http://h/x")
    assert key != cache_key("1001", "http://h/x") != cache_key("1000", "http://h/y")
    assert "/" not in key and len(key) == 64


def test_ledger_reserves_and_evicts_the_least_recently_used() -> None:
    ledger = CacheLedger(capacity_bytes=100)
    for key in ("a", "b", "c"):
        assert ledger.reserve(key, 30) == []
        ledger.commit(key, 30)
        ledger.unpin(key)
    assert ledger.used_bytes == 90
    assert ledger.lookup("a") is not None  # a is now the most recently used
    ledger.unpin("a")
    assert ledger.reserve("d", 40) == ["b"]  # 10 free + b's 30
    ledger.commit("d", 40)
    ledger.unpin("d")
    assert set(ledger.entries) == {"a", "c", "d"} and ledger.used_bytes == 100


def test_ledger_never_evicts_pinned_or_pending_entries() -> None:
    ledger = CacheLedger(capacity_bytes=100)
    assert ledger.reserve("a", 60) == []  # pending: pinned by its download
    assert ledger.reserve("b", 50) is None  # cannot fit without evicting a
    assert ledger.lookup("a") is None  # not ready yet
    ledger.commit("a", 60)
    ledger.unpin("a")
    assert ledger.lookup("a") is not None  # a reader pins it
    assert ledger.reserve("b", 50) is None
    ledger.unpin("a")
    assert ledger.reserve("b", 50) == ["a"]


def test_ledger_refuses_what_can_never_fit_and_duplicate_reservations() -> None:
    ledger = CacheLedger(capacity_bytes=10)
    assert ledger.reserve("big", 11) is None
    assert ledger.reserve("a", 5) == []
    assert ledger.reserve("a", 5) is None
    ledger.forget("a")
    assert ledger.used_bytes == 0

"""The pure parts of Agora's ZooKeeper support: zk:// URLs, Mesos's candidacy names, the
MasterInfo JSON in them, and the registry's znode names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.core.master.info import MasterInfo
from agora.master.registry.store import StoreError
from agora.master.registry.zookeeper_store import decode_name, encode_name
from agora.wire.mesos_json import WireError, master_info_from_json, master_info_to_json
from agora.zookeeper.election import leader_of, sequence_of
from agora.zookeeper.url import InvalidZooKeeperUrl, ZooKeeperUrl, parse_zk_url


def test_a_typical_mesos_url() -> None:
    url = parse_zk_url("zk://zk1:2181,zk2:2182,10.0.0.3:2183/mesos")
    assert url == ZooKeeperUrl(
        hosts=(("zk1", 2181), ("zk2", 2182), ("10.0.0.3", 2183)), path="/mesos"
    )
    assert url.connect_string == "zk1:2181,zk2:2182,10.0.0.3:2183"
    assert url.credentials is None and url.digest is None
    assert url.child("json.info_0000000001") == "/mesos/json.info_0000000001"


@pytest.mark.parametrize(
    ("text", "hosts", "path"),
    [
        ("zk://h", (("h", 2181),), "/"),
        ("zk://h/", (("h", 2181),), "/"),
        ("zoo://h:1/a/b/c", (("h", 1),), "/a/b/c"),
        ("zk://[::1]:2181,[fe80::1]/x", (("::1", 2181), ("fe80::1", 2181)), "/x"),
    ],
)
def test_defaults_schemes_and_ipv6(
    text: str, hosts: tuple[tuple[str, int], ...], path: str
) -> None:
    url = parse_zk_url(text)
    assert (url.hosts, url.path) == (hosts, path)


def test_digest_credentials_and_a_masked_rendering() -> None:
    url = parse_zk_url("zk://agora:p@ss:w@rd@h1:2181,h2:2181/mesos")
    assert url.credentials == ("agora", "p@ss:w@rd")
    assert url.digest == "agora:p@ss:w@rd"
    assert str(url) == "zk://agora:***@h1:2181,h2:2181/mesos"
    assert parse_zk_url("zk://[::1]:2181/m").connect_string == "[::1]:2181"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h1:2181/mesos", "must start with zk://"),
        ("http://h1:2181/mesos", "must start with zk://"),
        ("zk:///mesos", "empty host"),
        ("zk://h1:2181,,h2/mesos", "empty host"),
        ("zk://h1:21a81/mesos", "bad port in 'h1:21a81'"),
        ("zk://h1:0/mesos", "a port is a number from 1 to 65535"),
        ("zk://h1:65536/mesos", "a port is a number from 1 to 65535"),
        ("zk://h1:/mesos", "bad port"),
        ("zk://h1:1:2/mesos", "bad host 'h1:1:2'"),
        ("zk://[::1/mesos", "bad IPv6 host"),
        ("zk://[::1]x/mesos", "bad IPv6 host"),
        ("zk://user@h1/mesos", "must be user:password"),
        ("zk://:pw@h1/mesos", "must be user:password"),
        ("zk://user:@h1/mesos", "must be user:password"),
        ("zk://h1/mesos/", "must not end with /"),
        ("zk://h1/a//b", "empty, '.' or '..' component"),
        ("zk://h1/a/../b", "empty, '.' or '..' component"),
        ("zk://h1/a\x01b", "control character"),
    ],
)
def test_bad_urls_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidZooKeeperUrl, match=message):
        parse_zk_url(text)


def test_a_refused_url_never_shows_the_password() -> None:
    with pytest.raises(InvalidZooKeeperUrl) as refused:
        parse_zk_url("zk://agora:hunter2@h1:99999/mesos")
    assert "hunter2" not in str(refused.value)


def test_candidacy_names_and_the_leader() -> None:
    assert sequence_of("json.info_0000000042") == 42
    for other in ("log_replicas", "registry", "info_0000000001", "json.info_", "json.info_1x"):
        assert sequence_of(other) is None
    children = ["registry", "json.info_0000000010", "log_replicas", "json.info_0000000009"]
    assert leader_of(children) == "json.info_0000000009"
    assert leader_of(["log_replicas", "registry"]) is None
    assert leader_of([]) is None
    # By number, not by text (pymesos compares text, which the zero padding makes equal).
    assert leader_of(["json.info_10000000000", "json.info_9999999999"]) == "json.info_9999999999"


def test_master_info_json_round_trips() -> None:
    info = MasterInfo(id="m-1", ip="10.0.0.5", port=5050, hostname="m1", version="1.11.0")
    assert master_info_from_json(master_info_to_json(info)) == info


def test_master_info_from_a_mesos_master() -> None:
    """The example znode data of reference §7 (real Mesos 1.11)."""
    data = {
        "address": {"hostname": "m1", "ip": "10.0.0.5", "port": 5050},
        "hostname": "m1",
        "id": "5d8f",
        "ip": 83886090,
        "pid": "master@10.0.0.5:5050",
        "port": 5050,
        "version": "1.11.0",
    }
    assert master_info_from_json(data) == MasterInfo("5d8f", "10.0.0.5", 5050, "m1", "1.11.0")
    bare = {"id": "x", "ip": 16777343, "port": 5051}  # no address: the uint32 ip is the address
    assert master_info_from_json(bare) == MasterInfo("x", "127.0.0.1", 5051, "127.0.0.1", "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "'MasterInfo' must be a JSON object"),
        ({"ip": 1, "port": 1}, "'MasterInfo.id' must be a string"),
        ({"id": "x", "port": 5050}, "'MasterInfo.ip' must be a number"),
        ({"id": "x", "ip": -1, "port": 5050}, "uint32"),
        ({"id": "x", "ip": 1}, "'MasterInfo.address.port' must be a number"),
        ({"id": "x", "address": {"ip": "1.2.3.4", "port": 0}}, "must be a port number"),
    ],
)
def test_bad_master_info_names_the_field(data: object, message: str) -> None:
    with pytest.raises(WireError, match=message):
        master_info_from_json(data)


@given(st.text(min_size=1))
def test_every_registry_name_is_one_reversible_znode_name(name: str) -> None:
    try:
        encoded = encode_name(name)
    except StoreError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in name)  # lone surrogates only
        return
    assert decode_name(encoded) == name
    assert "/" not in encoded and encoded not in (".", "..")
    assert all(0x21 <= ord(c) <= 0x7E for c in encoded)  # printable ASCII: always legal


def test_encoding_is_injective_on_look_alikes() -> None:
    names = [".", "%2E", "%252E", "..", "%2E%2E", "a/b", "a%2Fb"]
    assert len({encode_name(name) for name in names}) == len(names)

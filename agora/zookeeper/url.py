"""`zk://` URLs, as Mesos takes them in `--zk` (masters) and `--master` (agents, frameworks).

    zk://[user:password@]host1:port1,host2:port2/path      (`zoo://` is accepted too)

`hosts` are the ensemble members (a missing port means ZooKeeper's 2181), `path` the znode
under which masters contend (Mesos's default is `/mesos`; a URL without a path means `/`),
`credentials` optional ZooKeeper digest credentials. Every refusal names what is wrong, so a
mistyped flag fails at start-up with a message the operator can act on. This is the one
parser: masters, agents and the client library all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES = ("zk://", "zoo://")
DEFAULT_PORT = 2181


class InvalidZooKeeperUrl(ValueError):  # noqa: N818 (reads as a sentence: raise InvalidZooKeeperUrl)
    """A `zk://` URL that cannot be used; the message says which part is wrong."""


@dataclass(frozen=True)
class ZooKeeperUrl:
    hosts: tuple[tuple[str, int], ...]
    path: str = "/"
    credentials: tuple[str, str] | None = None  # digest (user, password)

    @property
    def connect_string(self) -> str:
        """`h1:p1,h2:p2` as ZooKeeper clients take it (IPv6 hosts in brackets)."""
        return ",".join(_host_port(host, port) for host, port in self.hosts)

    @property
    def digest(self) -> str | None:
        """`user:password` for ZooKeeper's digest scheme, or None."""
        if self.credentials is None:
            return None
        return f"{self.credentials[0]}:{self.credentials[1]}"

    def child(self, name: str) -> str:
        """The path of `name` directly under this URL's path."""
        return f"{self.path.rstrip('/')}/{name}"

    def __str__(self) -> str:
        """The URL with the password masked (safe to log)."""
        user = f"{self.credentials[0]}:***@" if self.credentials else ""
        return f"zk://{user}{self.connect_string}{self.path}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_zk_url(text: str) -> ZooKeeperUrl:
    """Parse `zk://[user:pass@]h1:p1,h2:p2/path`; InvalidZooKeeperUrl names what is wrong."""
    if not isinstance(text, str):
        raise InvalidZooKeeperUrl(f"a ZooKeeper URL must be a string, not {text!r}")
    scheme = next((s for s in SCHEMES if text.startswith(s)), None)
    if scheme is None:
        raise InvalidZooKeeperUrl(
            f"ZooKeeper URL {text!r} must start with zk:// (e.g. zk://host:2181/mesos)"
        )
    rest = text[len(scheme) :]
    authority, slash, path = rest.partition("/")
    credentials = None
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        credentials = _parse_credentials(userinfo, text)
    hosts = tuple(_parse_host(item, text) for item in authority.split(","))
    return ZooKeeperUrl(
        hosts=hosts, path=validate_path("/" + path if slash else "/", text), credentials=credentials
    )


def _parse_credentials(userinfo: str, url: str) -> tuple[str, str]:
    user, colon, password = userinfo.partition(":")
    if not colon or not user or not password:
        raise InvalidZooKeeperUrl(
            f"the credentials in ZooKeeper URL {_mask(url)} must be user:password "
            "(ZooKeeper digest authentication)"
        )
    return user, password


def _mask(url: str) -> str:
    """The URL with anything before '@' hidden, for error messages."""
    if "@" not in url:
        return repr(url)
    scheme, _, rest = url.partition("://")
    return repr(f"{scheme}://***@{rest.rpartition('@')[2]}")


def _parse_host(item: str, url: str) -> tuple[str, int]:
    if not item:
        raise InvalidZooKeeperUrl(
            f"ZooKeeper URL {_mask(url)} has an empty host (hosts are host:port, comma-separated)"
        )
    if item.startswith("["):
        host, bracket, tail = item[1:].partition("]")
        if not bracket or not host or (tail and not tail.startswith(":")):
            raise InvalidZooKeeperUrl(f"bad IPv6 host {item!r} in ZooKeeper URL {_mask(url)}")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text_or_empty = item.partition(":")
        port_text = port_text_or_empty if colon else None
        if not host or ":" in port_text_or_empty:
            raise InvalidZooKeeperUrl(f"bad host {item!r} in ZooKeeper URL {_mask(url)}")
    if any(c.isspace() for c in host):
        raise InvalidZooKeeperUrl(f"bad host {item!r} in ZooKeeper URL {_mask(url)}")
    return host, _parse_port(port_text, item, url)


def _parse_port(text: str | None, item: str, url: str) -> int:
    if text is None:
        return DEFAULT_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidZooKeeperUrl(
            f"bad port in {item!r} of ZooKeeper URL {_mask(url)}: "
            "a port is a number from 1 to 65535"
        )
    return int(text)


def validate_path(path: str, url: str | None = None) -> str:
    """A ZooKeeper path: absolute, no empty, `.` or `..` components, no trailing `/`.

    Returned unchanged when valid (`url` only makes the error message name the URL)."""
    where = f" in ZooKeeper URL {_mask(url)}" if url else ""
    if path == "/":
        return path
    if not path.startswith("/"):
        raise InvalidZooKeeperUrl(f"ZooKeeper path {path!r}{where} must start with /")
    if path.endswith("/"):
        raise InvalidZooKeeperUrl(f"ZooKeeper path {path!r}{where} must not end with /")
    for component in path[1:].split("/"):
        if component in ("", ".", ".."):
            raise InvalidZooKeeperUrl(
                f"ZooKeeper path {path!r}{where} has an empty, '.' or '..' component"
            )
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in component):
            raise InvalidZooKeeperUrl(
                f"ZooKeeper path {path!r}{where} contains a control character"
            )
    return path

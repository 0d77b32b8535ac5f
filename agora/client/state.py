"""Reading cluster state over HTTP (aiohttp): the master's legacy JSON endpoints (§6.1-6.2),
an agent's `/state` (§6.3) and its files API (§6.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from agora.client.http import split_address
from agora.zookeeper.leader import LeaderAddress, is_zk_url


class UnreachableError(Exception):
    """Nothing answers at that address (or it answers with an error)."""


def base_url(address: str, default_port: int = 5050) -> str:
    host, port = split_address(address, default_port)
    return f"http://{host}:{port}"


def agent_address(agent: Mapping[str, Any]) -> str:
    """An agent's `ip:port` from a `/master/state` agent entry (`pid` is `slave(1)@ip:port`)."""
    pid = str(agent.get("pid", ""))
    if "@" in pid:
        return pid.split("@", 1)[1]
    return f"{agent.get('hostname', '127.0.0.1')}:{agent.get('port', 5051)}"


class StateClient:
    """GETs JSON from masters and agents over one aiohttp session."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 5.0))
        self._session: aiohttp.ClientSession | None = None
        self._leaders: dict[str, str] = {}  # zk:// URL -> the leading master found

    async def __aenter__(self) -> StateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _resolve(self, address: str) -> str:
        """A zk:// master is whichever master ZooKeeper says leads (looked up once, and
        again after a failed request)."""
        if not is_zk_url(address):
            return address
        if address in self._leaders:
            return self._leaders[address]
        leader = LeaderAddress(address)
        try:
            await leader.start(timeout_s=self._timeout.total or 10.0)
            host, port = await leader.wait(timeout_s=self._timeout.total)
        except TimeoutError:
            raise UnreachableError(f"no master leads in {address}") from None
        finally:
            await leader.close()
        self._leaders[address] = f"{host}:{port}"
        return self._leaders[address]

    async def get_json(
        self, address: str, path: str, params: Mapping[str, str | int] | None = None
    ) -> Any:
        given, address = address, await self._resolve(address)
        try:
            return await self._get(address, path, params)
        except UnreachableError:
            self._leaders.pop(given, None)
            raise

    async def _get(
        self, address: str, path: str, params: Mapping[str, str | int] | None = None
    ) -> Any:
        url = base_url(address) + path
        try:
            async with self._get_session().get(url, params=params) as response:
                if response.status != 200:
                    text = (await response.text()).strip()
                    raise UnreachableError(f"{url} answered {response.status}: {text[:200]}")
                return await response.json(content_type=None)
        except aiohttp.ClientConnectorError as error:
            reason = error.os_error.strerror or str(error.os_error)
            raise UnreachableError(f"cannot connect to {address}: {reason}") from None
        except aiohttp.ClientError as error:
            raise UnreachableError(f"cannot reach {address}: {error}") from None
        except TimeoutError:
            raise UnreachableError(f"cannot reach {address}: timed out") from None
        except ValueError as error:
            raise UnreachableError(f"{url} did not answer JSON: {error}") from None

    async def master_state(self, master: str) -> dict[str, Any]:
        state = await self.get_json(master, "/master/state")
        if not isinstance(state, dict):
            raise UnreachableError(f"{master}/master/state is not a JSON object")
        return state

    async def master_tasks(self, master: str, limit: int = 1000) -> list[dict[str, Any]]:
        body = await self.get_json(master, "/master/tasks", {"limit": limit})
        return list(body.get("tasks", [])) if isinstance(body, dict) else []

    async def agent_state(self, agent: str) -> dict[str, Any]:
        state = await self.get_json(agent, "/state")
        if not isinstance(state, dict):
            raise UnreachableError(f"{agent}/state is not a JSON object")
        return state

    async def read_file(
        self, agent: str, path: str, offset: int, length: int = 64 * 1024
    ) -> tuple[int, str]:
        """One `/files/read` page: (offset it starts at, text)."""
        body = await self.get_json(
            agent, "/files/read", {"path": path, "offset": offset, "length": length}
        )
        return int(body.get("offset", offset)), str(body.get("data", ""))

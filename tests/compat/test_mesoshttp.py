"""The unmodified mesoshttp 0.4.2 client against a real Agora master and agent.

`MesosClient.register()` blocks on the subscription stream, so it runs in a thread; callbacks
run on that thread and record what they see.

mesoshttp reads the stream with `requests`' `iter_lines()`, which holds back the last,
unterminated line until more bytes arrive; a RecordIO record has no trailing newline, so every
event reaches mesoshttp only when the next record does (against Mesos too). Mesos sends a
HEARTBEAT right after SUBSCRIBED, so SUBSCRIBED is seen at once; later events may wait for the
next 15 s heartbeat, hence the long waits here."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from mesoshttp.client import MesosClient  # type: ignore[import-untyped]

from agora.testing.cluster import wait_until
from tests.compat.conftest import framework_in_state
from tests.compat.harness import Recorder, command_task, scalar

SLOW_WAIT_S = 50.0  # a pending event may wait for the next 15 s heartbeat, more than once


class Client:
    def __init__(self, address: str, name: str, recorder: Recorder) -> None:
        self.recorder = recorder
        url = address if "://" in address else f"http://{address}"  # zk://... as it is
        self.client = MesosClient(mesos_urls=[url], frameworkName=name)
        self.client.on(MesosClient.SUBSCRIBED, self.on_subscribed)
        self.client.on(MesosClient.OFFERS, self.on_offers)
        self.client.on(MesosClient.UPDATE, self.on_update)
        self.client.on(MesosClient.ERROR, lambda message: recorder._record("error", message))
        self.tasks: list[Any] = []
        self.launched = threading.Event()
        self.result: list[Any] = []
        self.thread = threading.Thread(target=self._register, name="mesoshttp", daemon=True)

    def _register(self) -> None:
        self.result.append(self.client.register())

    def on_subscribed(self, driver: Any) -> None:
        self.recorder._record("registered", self.client.frameworkId, driver)

    def on_offers(self, offers: list[Any]) -> None:
        self.recorder._record("resourceOffers", [o.get_offer() for o in offers])
        for offer in offers:
            info = offer.get_offer()
            if self.tasks and not self.launched.is_set() and scalar(info, "cpus") >= 0.1:
                offer.accept([task(info) for task in self.tasks])
                self.launched.set()
            else:
                offer.decline({"filters": {"refuse_seconds": 1}})

    def on_update(self, update: Any) -> None:
        self.recorder._record("statusUpdate", update["status"])

    def stop(self) -> None:
        self.client.tearDown()  # stop the read loop ...
        if self.client.frameworkId and self.client.streamId:
            self.client.get_driver().tearDown()  # ... and TEARDOWN, which ends the stream
        self.thread.join(15)


@pytest.fixture
def mesoshttp_client(recorder: Recorder) -> Iterator[Any]:
    clients: list[Client] = []

    def make(address: str, name: str) -> Client:
        client = Client(address, name, recorder)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop()


def test_subscribe_and_teardown(master_only, recorder, mesoshttp_client):
    address = master_only.master_address
    client = mesoshttp_client(address, "compat-mesoshttp")
    client.thread.start()
    framework_id = recorder.wait_for_kind("registered", timeout_s=SLOW_WAIT_S).args[0]
    assert framework_id
    assert client.client.streamId
    assert client.client.get_master_info()["port"] == int(address.split(":")[1])
    assert framework_in_state(address, framework_id)[0] == "frameworks"
    client.stop()
    assert not client.thread.is_alive()
    wait_until(
        lambda: framework_in_state(address, framework_id)[0] == "completed_frameworks",
        10,
        "the framework to be completed",
    )


@pytest.mark.slow
def test_command_task_finishes(cluster, recorder, mesoshttp_client):
    address = cluster.master_address
    client = mesoshttp_client(address, "compat-mesoshttp-task")
    # mesoshttp adds a v0-style `slave_id` to each TaskInfo; the master must ignore it.
    client.tasks = [lambda offer: command_task("mh-hi", offer, "echo hi")]
    client.thread.start()
    framework_id = recorder.wait_for_kind("registered", timeout_s=SLOW_WAIT_S).args[0]
    status = recorder.wait_for_state("mh-hi", "TASK_FINISHED", timeout_s=2 * SLOW_WAIT_S)
    assert status["agent_id"]["value"]
    # mesoshttp acknowledged every update itself; the terminal one completes the task.
    wait_until(
        lambda: any(
            t["id"] == "mh-hi"
            for t in framework_in_state(address, framework_id)[1]["completed_tasks"]
        ),
        15,
        "the acknowledged task in completed_tasks",
    )
    client.stop()
    assert not client.thread.is_alive()
    wait_until(
        lambda: framework_in_state(address, framework_id)[0] == "completed_frameworks",
        10,
        "the framework to be completed",
    )


def test_subscribed_is_seen_at_once(master_only, recorder, mesoshttp_client):
    client = mesoshttp_client(master_only.master_address, "compat-mesoshttp-prompt")
    client.thread.start()
    recorder.wait_for_kind("registered", timeout_s=5)

"""The scheduler driver against a real master and agents: subscribe, get offers, launch a
command task, see it through to TASK_FINISHED with every update acknowledged."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agora.client import (
    TERMINAL_STATES,
    Event,
    FrameworkInfo,
    SchedulerDriver,
    command_info,
    offer_role,
    offer_scalars,
    scalar_resources,
    task_info,
)
from agora.testing.cluster import LocalCluster, wait_until


async def launch_and_finish(master: str, command: str) -> tuple[SchedulerDriver, list[str], str]:
    driver = SchedulerDriver(master, FrameworkInfo(name="it-driver", failover_timeout_s=60))
    states: list[str] = []
    done = asyncio.Event()
    launched: list[str] = []

    async def offers(event: Event) -> None:
        for offer in event.offers:
            offer_id = offer["id"]["value"]
            if launched or offer_scalars(offer).get("cpus", 0) < 0.1:
                await driver.decline([offer_id])
                continue
            task = task_info(
                "it-task-1",
                offer["agent_id"]["value"],
                command=command_info(command),
                resources=scalar_resources(0.1, 32, role=offer_role(offer)),
            )
            launched.append(offer["agent_id"]["value"])
            await driver.launch([offer_id], [task])

    def update(event: Event) -> None:
        status = event.status
        states.append(status["state"])
        if status["state"] in TERMINAL_STATES:
            done.set()

    driver.on("OFFERS", offers)
    driver.on("UPDATE", update)
    framework_id = await driver.wait_subscribed(30.0)
    await asyncio.wait_for(done.wait(), 60.0)
    return driver, states, framework_id


def test_driver_runs_a_task_to_finished_and_acknowledges(cluster: LocalCluster) -> None:
    async def main() -> None:
        driver, states, framework_id = await launch_and_finish(cluster.master_address, "echo hi")
        try:
            assert states[-1] == "TASK_FINISHED", states
            assert "TASK_RUNNING" in states

            def acknowledged() -> bool:
                for framework in cluster.master_state()["frameworks"]:
                    if framework["id"] == framework_id:
                        done = framework.get("completed_tasks", [])
                        return not framework["tasks"] and any(
                            t["id"] == "it-task-1" and t["state"] == "TASK_FINISHED" for t in done
                        )
                return False

            # Terminal updates leave the master's active tasks only once acknowledged.
            await asyncio.to_thread(wait_until, acknowledged, 20.0, "acknowledged completion")
            await driver.reconcile([("it-task-1", None)])
        finally:
            await driver.stop(teardown=True)
        frameworks = cluster.master_state()["frameworks"]
        assert all(f["id"] != framework_id for f in frameworks)

    asyncio.run(main())


def test_every_call_is_accepted_by_a_real_master(tmp_path: Path) -> None:
    with LocalCluster(agents=0, work_dir=tmp_path / "c") as master_only:

        async def main() -> None:
            info = FrameworkInfo(name="calls", roles=["eng"], failover_timeout_s=30)
            async with SchedulerDriver(master_only.master_address, info) as driver:
                assert driver.stream_id and driver.framework_id
                await driver.suppress()
                await driver.revive(["eng"])
                await driver.reconcile()
                await driver.decline([])
                await driver.update_framework(
                    FrameworkInfo(name="calls-renamed", roles=["eng"], failover_timeout_s=30)
                )
                state = master_only.master_state()
                names = {f["id"]: f["name"] for f in state["frameworks"]}
                assert names[driver.framework_id] == "calls-renamed"
                framework_id = driver.framework_id
                await driver.stop(teardown=True)
            state = master_only.master_state()
            assert framework_id not in {f["id"] for f in state["frameworks"]}
            assert framework_id in {f["id"] for f in state["completed_frameworks"]}

        asyncio.run(main())

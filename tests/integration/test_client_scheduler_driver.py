"""The scheduler driver against a real master and agents: subscribe, get offers, launch a
command task, see it through to TASK_FINISHED with every update acknowledged."""

from __future__ import annotations

import asyncio

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

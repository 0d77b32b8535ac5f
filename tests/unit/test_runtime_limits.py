"""Process limits a busy server sets for itself, and the collector held off while a
master rebuilds its state after an election (agora/runtime)."""

from __future__ import annotations

import asyncio
import gc
import resource

from agora.runtime.gc_tuning import CollectionHold
from agora.runtime.limits import listen_backlog, raise_open_file_limit


def test_the_open_file_limit_goes_up_to_the_hard_limit():
    soft = raise_open_file_limit()
    now, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == now
    assert hard in (resource.RLIM_INFINITY, now)


def test_the_listen_backlog_is_at_least_the_default():
    assert listen_backlog() >= 128


def test_the_collector_is_held_until_released_then_what_survived_is_frozen():
    async def main() -> None:
        frozen_before = gc.get_freeze_count()
        hold = CollectionHold(max_s=60.0)
        assert (gc.isenabled(), hold.held) == (False, True)
        survivors = [[i] for i in range(1000)]  # tracked objects made during the burst
        hold.release()
        assert (gc.isenabled(), hold.held) == (True, False)
        assert gc.get_freeze_count() >= frozen_before + len(survivors)
        hold.release()  # once is enough
        assert gc.isenabled()

    asyncio.run(main())
    gc.unfreeze()


def test_the_hold_ends_by_itself_after_its_longest_time():
    async def main() -> None:
        hold = CollectionHold(max_s=0.01)
        async with asyncio.timeout(5.0):
            while hold.held:
                await asyncio.sleep(0.01)
        assert gc.isenabled()

    asyncio.run(main())
    gc.unfreeze()

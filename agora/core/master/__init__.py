"""The master core: frameworks, agents, offers, tasks and executors as one state machine.

`MasterCore.handle(event, now)` returns commands; `next_deadline()` says when to call
it again with a `Tick`. See agora.core.master.core.
"""

"""The agent's pure core: tasks, executors, status update streams and registration.

`AgentCore.handle(event, now)` returns commands for the shell in `agora/agent/`; it never
touches processes, sockets, files or the clock."""

"""The pure core: every decision Agora makes, with no I/O.

Nothing under this package touches sockets, files, processes, clocks or global
randomness; callers pass the time (`now`) and a seeded `random.Random` in.
"""

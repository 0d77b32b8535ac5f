"""`python -m agora ...` is the `agora` command (used to start services as subprocesses)."""

from agora.cli.main import main

main()

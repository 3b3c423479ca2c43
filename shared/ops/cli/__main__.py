"""`python -m shared.ops.cli`: the `mentornet` command without the installed script (tests use it)."""

from shared.ops.cli.main import main

main()

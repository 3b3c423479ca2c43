"""`python -m shared.cli`: the `mentornet` command without the installed script (tests use it)."""

from shared.cli.main import main

main()

"""The `mentornet` command line: one entry point for operators, integrators and analysts."""

from shared.ops.cli.main import app, main

__all__ = ["app", "main"]

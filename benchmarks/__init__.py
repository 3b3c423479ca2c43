"""Benchmarks: `python -m benchmarks.NAME [--quick]`, each printing one JSON object as its last line."""

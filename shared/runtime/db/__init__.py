"""PostgreSQL helpers: connection pools, the migration runner, inbox and outbox."""

from shared.runtime.db.pool import create_pool, transaction

__all__ = ["create_pool", "transaction"]

"""The embedded registry store: one SQLite file beside the master, the single-master
default. Every `apply` is one SQLite transaction committed with synchronous=FULL (WAL),
so it is durable when `apply` returns; the blocking work runs in one worker thread so
the event loop never waits on an fsync."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from agora.master.registry.store import Delete, Put, StoreError, Transaction, check_change

T = TypeVar("T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID
"""


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, work)
        except sqlite3.Error as error:
            raise StoreError(f"registry {self.path}: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def _load(self) -> dict[str, dict[str, bytes]]:
        out: dict[str, dict[str, bytes]] = {}
        for kind, key, value in self._connection().execute("SELECT kind, key, value FROM records"):
            out.setdefault(kind, {})[key] = bytes(value)
        return out

    def _apply(self, transactions: Sequence[Transaction]) -> None:
        db = self._connection()
        # One SQLite transaction for the whole group: each inner transaction is then
        # atomic too, and the group costs one fsync.
        db.execute("BEGIN IMMEDIATE")
        try:
            for transaction in transactions:
                for change in transaction:
                    if isinstance(change, Put):
                        db.execute(
                            "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
                            (change.kind, change.key, change.value),
                        )
                    elif isinstance(change, Delete):
                        db.execute(
                            "DELETE FROM records WHERE kind = ? AND key = ?",
                            (change.kind, change.key),
                        )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def load(self) -> dict[str, dict[str, bytes]]:
        return await self._run(self._load)

    async def apply(self, transactions: Sequence[Transaction]) -> None:
        for transaction in transactions:
            for change in transaction:
                check_change(change)
        if transactions:
            batch = list(transactions)
            await self._run(lambda: self._apply(batch))

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._thread.shutdown(wait=True)

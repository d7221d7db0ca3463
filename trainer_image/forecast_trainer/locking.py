"""A per-product lock in the OUTPUT database, so two trainers never train one product at once.

The operator's Lease stops two pods of one namespace from training a product together; it
cannot see a TrainingJob in another namespace, or another cluster, writing to the same table.
This lock lives where the models go, so it covers exactly what it protects: the rows of one
product in one output schema.

- Key: a signed 64-bit integer, the first 8 bytes of SHA-256 over a fixed prefix and the JSON
  array ``[schema, product]`` (``product_lock_key``; unambiguous for any two strings), the same
  in every trainer version that uses this prefix.
- First line: before a product is read, the trainer takes a SESSION-level
  ``pg_try_advisory_lock(key)`` on a dedicated connection (not from the pool) and holds it
  until the product's model + forecast transaction has committed, or the product has failed.
  If another session holds it, the product is not trained: it is reported ``locked``.
- Second line: the write transaction itself takes ``pg_advisory_xact_lock(key)`` (store.py),
  so writers that hold no session lock are serialised with it too. The write runs on the lock's
  own connection, where that lock is re-entrant.
- If the lock's connection breaks during a write, the session lock is gone with it: the trainer
  reconnects, takes the lock again (or reports ``locked`` when someone else has it by then) and
  retries.
- While the product trains (minutes), a heartbeat checks every ``--lock-heartbeat-seconds``
  (10 s) on the lock's connection that this session still holds the lock. Lost (the session was
  ended: an idle timeout, a failover, pg_terminate_backend): training stops, nothing is written,
  the product is reported ``locked`` (LockLost) and its launcher retries it later. Another
  trainer may hold the lock by then; two trainings never write one product's model together.
- The lock's session asks the server for TCP keepalives (``tcp_keepalives_*``: probe after
  30 s idle, every 10 s, 3 probes): a trainer that died with its node (no FIN, no RST) releases
  the lock after ~1 minute, not after the OS default of ~2 h 11 min.
- A transaction-mode pooler (PgBouncer ``pool_mode = transaction``) between trainers and the
  output database breaks session locks (each statement may run on another server session, and
  the lock stays on one nobody owns): connect trainers directly, or through session mode. The
  heartbeat then reports the lock lost instead of training unprotected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from forecast_trainer.db import Database, describe, is_transient
from forecast_trainer.errors import LockLost, ProductLocked, one_line
from forecast_trainer.logs import get_logger

log = get_logger("lock")

T = TypeVar("T")

KEY_PREFIX = b"forecast-trainer/product-lock/v1"
LOCK_SESSION_KEEPALIVES = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}
"""Server-side TCP keepalives of the lock's session (per session: any role may set them): the
server ends the session of a peer that vanished, and with it the lock, within ~60 s."""
HEARTBEAT_SECONDS = 10.0


def product_lock_key(schema: str, product: str) -> int:
    """The advisory-lock key of ``product`` in output ``schema`` (signed 64-bit)."""
    text = json.dumps([schema, product], ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(KEY_PREFIX + b"\0" + text.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_key_parts(key: int) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows a bigint advisory lock ``key``."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def application_name(trainingjob: str | None) -> str:
    """What the lock's session calls itself in pg_stat_activity (so a waiter can name the holder)."""
    parts = ["forecast-trainer", trainingjob or "", os.environ.get("HOSTNAME", "")]
    return " ".join(p for p in parts if p)[:63]


_HOLDER_SQL = """
SELECT a.pid, a.application_name, a.client_addr::text AS client
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""

_HELD_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_locks
  WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = pg_backend_pid()
    AND classid = $1::bigint::oid AND objid = $2::bigint::oid
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
"""


class LockSession:
    """One lock connection kept across the products of a shard (shard mode).

    A product's ProductLock borrows it instead of opening (and authenticating) a connection of
    its own: a new PostgreSQL backend per product would cost more than training the cheapest
    family. The session lock is released after each product; a connection whose unlock did not
    succeed, or that broke, is closed and replaced, so no lock outlives its product.
    """

    def __init__(self) -> None:
        self.conn: Any = None

    def take(self) -> Any:
        conn, self.conn = self.conn, None
        return conn if conn is not None and not conn.is_closed() else None

    def give_back(self, conn: Any) -> None:
        self.conn = conn

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            await _close(conn)


class ProductLock:
    """The session-level advisory lock of one product, held on its own connection.

    ``acquire`` raises ProductLocked when another session holds it (InfraUnavailable when the
    database cannot be reached); ``run`` runs work on the lock's connection; ``release``
    unlocks and closes. ``saved`` is where the write leaves what it stored (guard.py).
    """

    def __init__(
        self,
        db: Database,
        schema: str,
        product: str,
        trainingjob: str | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        session: LockSession | None = None,
    ) -> None:
        self.db = db
        self.session = session  # shard mode: the connection is borrowed from it and given back
        self.heartbeat_seconds = heartbeat_seconds
        self._use = asyncio.Lock()  # one statement at a time on the lock's connection (heartbeat, writes)
        self.schema = schema
        self.product = product
        self.key = product_lock_key(schema, product)
        self.app_name = application_name(trainingjob)
        self.conn: Any = None
        self.lost_pid: int | None = None  # our own earlier backend, when the connection broke
        self.relocking = False
        """A statement's connection broke and ``run`` retries it: its next attempt locks again before
        any statement (or fails with ProductLocked), so the heartbeat must not call the lock lost."""
        self.saved: Any = None

    @property
    def what(self) -> str:
        return f"product {self.product!r} in schema {self.schema!r}"

    async def acquire(self) -> None:
        await self.db.retrying(self._lock, f"cannot lock {self.what}")

    async def _lock(self) -> None:
        conn = self.session.take() if self.session is not None else None
        if conn is None:
            conn = await self.db.connect(
                f"cannot connect to the {self.db.role} to lock {self.what}",
                {"application_name": self.app_name, **LOCK_SESSION_KEEPALIVES},
            )
        try:
            if not await self._try(conn):
                self.relocking = False
                holder = await self._holder(conn)
                raise ProductLocked(
                    f"{self.what} is being trained by another trainer ({holder}); not trained now, retry later",
                )
        except ProductLocked:
            if self.session is not None and not conn.is_closed():
                self.session.give_back(conn)  # it holds no lock of ours: the next product uses it
            else:
                await _close(conn)
            raise
        except BaseException:
            await _close(conn)
            raise
        self.conn = conn
        self.relocking = False

    async def _try(self, conn: Any) -> bool:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self.key):
            return True
        if self.lost_pid is None:
            return False
        # Our own earlier session may still hold it (the server has not noticed the broken
        # connection yet): end that session, then try again for a few seconds.
        holder = await conn.fetchrow(_HOLDER_SQL, *lock_key_parts(self.key))
        if holder is None or holder["pid"] != self.lost_pid:
            return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self.key))
        await conn.fetchval("SELECT pg_terminate_backend($1)", self.lost_pid)
        for _ in range(25):
            if await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self.key):
                return True
            await asyncio.sleep(0.2)
        return False

    async def _holder(self, conn: Any) -> str:
        """Who holds the lock, as far as this role may see (best effort)."""
        try:
            row = await conn.fetchrow(_HOLDER_SQL, *lock_key_parts(self.key))
        except Exception:
            row = None
        if row is None or row["pid"] is None:
            return f"PostgreSQL advisory lock {self.key}"
        name = one_line(row["application_name"] or "", 63) or "unnamed session"
        client = f" from {row['client']}" if row["client"] else ""
        return f"advisory lock {self.key} held by {name!r}, backend pid {row['pid']}{client}"

    async def run(self, what: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` on the lock's connection; after a broken connection: re-lock, retry."""

        async def attempt() -> T:
            try:
                async with self._use:
                    if self.conn is None or self.conn.is_closed():
                        await self._lock()
                    return await work(self.conn)
            except Exception as exc:
                lost = self.conn is not None and self.conn.is_closed()
                if is_transient(exc) or lost:
                    await self._drop()
                    self.relocking = True
                if lost and not is_transient(exc):
                    # e.g. asyncpg's InternalClientError when the server ended the session mid-call
                    raise ConnectionResetError(f"the lock connection was lost: {describe(exc)}") from exc
                raise

        try:
            return await self.db.retrying(attempt, what)
        finally:
            self.relocking = False  # done, or given up: nothing of this statement runs any more

    async def held(self) -> bool:
        """Whether this session still holds the lock (False when its connection is gone or hangs;
        True while ``run`` retries a statement whose connection broke: it locks again first)."""
        conn = self.conn
        if conn is None or conn.is_closed():
            return conn is None and self.relocking
        try:
            async with self._use:
                query = conn.fetchval(_HELD_SQL, *lock_key_parts(self.key))
                return bool(await asyncio.wait_for(query, timeout=max(self.heartbeat_seconds, 5.0)))
        except Exception:
            return False

    async def while_held(self, work: Awaitable[T]) -> T:
        """Run ``work`` (a product's training and write), checking every ``heartbeat_seconds`` that
        the lock is still held; when it is not, cancel ``work`` and raise :class:`LockLost`."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.heartbeat_seconds)
                if done:
                    return task.result()
                if not await self.held():
                    break
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.conn is not None:
            await self._drop()
        log.warning(
            "the lock of %s was lost while it trained: training stopped, nothing written",
            self.what,
            extra={"fields": {"event": "lock_lost", "product": self.product}},
        )
        raise LockLost(
            f"the lock of {self.what} in the output database was lost while it trained (its session ended: a "
            "network cut, an idle timeout, a failover, or a transaction-mode pooler); nothing was written, "
            "retry later"
        )

    async def _drop(self) -> None:
        """Forget a connection that failed (its session lock is gone, or soon will be)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            self.lost_pid = conn.get_server_pid()
        except Exception:
            self.lost_pid = None
        log.warning(
            "the lock connection of %s broke; it will be re-locked before the next statement",
            self.what,
            extra={"fields": {"event": "lock_connection_lost", "product": self.product}},
        )
        conn.terminate()

    async def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None or conn.is_closed():
            return
        unlocked = False
        try:
            unlocked = bool(
                await asyncio.wait_for(conn.fetchval("SELECT pg_advisory_unlock($1::bigint)", self.key), timeout=5)
            )
        except Exception as exc:  # closing the session releases it anyway
            log.debug("unlock of %s failed: %s", self.what, exc)
        if self.session is not None and unlocked and not conn.is_closed():
            self.session.give_back(conn)
            return
        await _close(conn)


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=5)
    except Exception:
        conn.terminate()

"""Writing to the transactional outbox (adr/0108): a Kafka record is inserted in the same transaction as the
change it describes, and the relay (``relay.py``) publishes it once that transaction has committed.

Callers run inside a tenant transaction (the outbox is RLS-forced like every tenant table). A record Kafka
would refuse for its size is refused here, so the change it belongs to rolls back instead of committing
with a record that could never be delivered.
"""

from __future__ import annotations

import psycopg

from gateway.errors import ApiError

# librdkafka's default message.max.bytes is 1,000,000 for the whole record (key, value, headers, framing);
# this leaves room for a key and the framing
MAX_VALUE_BYTES = 950_000


def enqueue(conn: psycopg.Connection, *, tenant_id: str, topic: str, key: bytes, value: bytes | None) -> int:
    """Adds one record (``value`` None: a tombstone); returns its outbox id. Raises ``ApiError`` 413
    ``record_too_large`` when Kafka could never take it."""
    if value is not None and len(value) + len(key) > MAX_VALUE_BYTES:
        raise ApiError(413, "record_too_large", f"the change would be a {len(value)}-byte {topic} record; the "
                       f"limit is {MAX_VALUE_BYTES} bytes (smaller attributes or documents)")
    row = conn.execute("insert into outbox (tenant_id, topic, key, value) values (%s, %s, %s, %s) returning id",
                       (tenant_id, topic, key, value)).fetchone()
    return int(row["id"] if isinstance(row, dict) else row[0])


def enqueue_many(conn: psycopg.Connection, *, tenant_id: str, topic: str,
                 records: list[tuple[bytes, bytes | None]]) -> list[int]:
    """``enqueue`` for many ``(key, value)`` records in one pipelined batch; their outbox ids, in order."""
    for key, value in records:
        if value is not None and len(value) + len(key) > MAX_VALUE_BYTES:
            raise ApiError(413, "record_too_large", f"the change would be a {len(value)}-byte {topic} record; the "
                           f"limit is {MAX_VALUE_BYTES} bytes (smaller attributes or documents)")
    if not records:
        return []
    ids = []
    with conn.cursor() as cur:
        cur.executemany("insert into outbox (tenant_id, topic, key, value) values (%s, %s, %s, %s) returning id",
                        [(tenant_id, topic, key, value) for key, value in records], returning=True)
        while True:
            row = cur.fetchone()
            ids.append(int(row["id"] if isinstance(row, dict) else row[0]))
            if not cur.nextset():
                break
    return ids


def unpublished(conn: psycopg.Connection, ids: list[int]) -> set[int]:
    """Which of ``ids`` the relay has not published yet (any tenant; ids reveal nothing)."""
    rows = conn.execute("select * from outbox_unpublished(%s)", (ids,)).fetchall()
    return {int(r["outbox_unpublished"] if isinstance(r, dict) else r[0]) for r in rows}


def backlog(conn: psycopg.Connection) -> tuple[int, object]:
    """(pending rows, created_at of the oldest pending) over all tenants."""
    row = conn.execute("select * from outbox_backlog()").fetchone()
    return (int(row["pending"]), row["oldest"]) if isinstance(row, dict) else (int(row[0]), row[1])

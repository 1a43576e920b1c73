"""Writing Faust tables from batches and timers.

Faust's ``table[key] = value`` writes the changelog to the partition of the *current event*. Agents here
take batches (``stream.take_events``) and timers run outside any event, so the current event is not the
record being handled. ``put``/``delete`` name the partition explicitly: the partition of the input record
(or, from a timer, the partition kept in the entry), so the changelog always matches the source topic.
"""

from __future__ import annotations

from typing import Any

import faust


def put(table: faust.Table, partition: int, key: Any, value: Any) -> None:
    store = table.data
    store.data[key] = value
    _remember_partition(store, key, partition)
    table.send_changelog(partition, key, value)


def delete(table: faust.Table, partition: int, key: Any) -> None:
    store = table.data
    store.data.pop(key, None)
    getattr(store, "_key_partition", {}).pop(key, None)
    table.send_changelog(partition, key, None, value_serializer="raw")  # a tombstone, as Faust's own del


def _remember_partition(store: Any, key: Any, partition: int) -> None:
    kp = getattr(store, "_key_partition", None)  # the memory store drops keys of lost partitions with it
    if kp is not None:
        kp[key] = partition


def owned_partitions(app: faust.App, topic: str) -> set[int]:
    """Partitions of ``topic`` this worker actively owns (timers act only on those entries)."""
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

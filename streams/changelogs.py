"""Creates the worker's table changelog topics before Faust starts (adr/0057).

Faust declares them itself while it starts, but its consumer may already have read cluster metadata in
which a just-created changelog does not exist yet ("Topic … not found in cluster metadata"). The topic
then appears at the next metadata refresh, five minutes later, and forces a rebalance of a busy worker;
one clean-clone run hung in that rebalance (Faust flushing its producer buffer). Declaring the topics
first, and waiting until the broker lists them, keeps the worker's first assignment final.
"""

from __future__ import annotations

import logging
import time

import faust

from runtime.kafka import KafkaLike, clients

log = logging.getLogger(__name__)


def declare(app: faust.App, kafka: KafkaLike, timeout_s: float = 30.0) -> None:
    k = clients(kafka)
    wanted = {}
    for table in app.tables.values():
        name = table.changelog_topic.get_topic_name()
        wanted[name] = k.new_topic(name, table.partitions or app.conf.topic_partitions, {"cleanup.policy": "compact"})
    admin = k.admin()
    existing = admin.list_topics(timeout=30).topics
    missing = [t for name, t in wanted.items() if name not in existing]
    if missing:
        for fut in admin.create_topics(missing, operation_timeout=30).values():
            try:
                fut.result()
            except Exception as exc:  # another worker created it first
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = admin.list_topics(timeout=10).topics
        if all(name in listed and listed[name].partitions for name in wanted):
            return
        time.sleep(0.2)
    log.warning("changelog topics not all listed after %ss: %s", timeout_s, sorted(wanted))

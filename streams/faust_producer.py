"""An idempotent producer for the Faust worker (adr/0131).

faust-streaming asks aiokafka for ``enable_idempotence`` only inside a transaction and exposes no option
for it, so the worker's own producer (changelogs, commands, alerts) could write a record twice when it
retries a request a broker failed over during. This adds it to the settings Faust builds its
``AIOKafkaProducer`` from; with ``producer_acks=-1`` (streams/app.py) that is what aiokafka requires.
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as driver

IDEMPOTENT = {"acks": "all", "enable_idempotence": True}

_extra = driver.Producer._settings_extra


def _idempotent_extra(self):
    return {**_extra(self), **IDEMPOTENT}


def install() -> None:
    driver.Producer._settings_extra = _idempotent_extra

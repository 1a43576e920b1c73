"""Fixtures shared by the MQTT connector's test modules."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest


@pytest.fixture(scope="module")
def paho2_shim():
    """pysparkplug 0.6.1 is written for paho 1.x; the one call paho 2 dropped, ``message_retry_set``, was
    already a no-op in paho 1.6 ("No longer used, remove in version 2.0"), so it is supplied as one. For the
    modules that drive a pysparkplug edge node: ``pytestmark = pytest.mark.usefixtures("paho2_shim")``."""
    added = not hasattr(mqtt.Client, "message_retry_set")
    if added:
        mqtt.Client.message_retry_set = lambda self, retry: None
    yield
    if added:
        del mqtt.Client.message_retry_set

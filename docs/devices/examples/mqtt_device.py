"""A complete MQTT device for fleetstream with paho-mqtt 2.x (docs/devices/mqtt.md).

It connects with its certificate over TLS as MQTT 5, client id ``<tenant_id>.<device_id>``, with a last will
that marks it offline; says it is online; subscribes to its commands, shadow deltas and rejections; publishes
a reading every INTERVAL_S seconds; answers each command ``succeeded``; applies each desired-state delta and
reports the new state back (``{"state": {…}}``); prints every rejection notice. Stops after RUN_S seconds.

    env: MQTT_HOST, MQTT_PORT (default 18883), TENANT_ID, DEVICE_ID, CERT_DIR (ca.crt, device.crt, device.key),
         INTERVAL_S (default 5), RUN_S (default 60)

Run:  python mqtt_device.py   (pip install paho-mqtt)
"""

from __future__ import annotations

import json
import os
import random
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT = os.environ["MQTT_HOST"], int(os.environ.get("MQTT_PORT", "18883"))
TENANT, DEVICE, CERTS = os.environ["TENANT_ID"], os.environ["DEVICE_ID"], os.environ["CERT_DIR"]
INTERVAL_S, RUN_S = float(os.environ.get("INTERVAL_S", "5")), float(os.environ.get("RUN_S", "60"))

ROOT = f"fs/{TENANT}/{DEVICE}"
TOPICS = {name: f"{ROOT}/{name}" for name in ("telemetry", "status", "commands", "commands/ack", "shadow/reported",
                                                  "shadow/delta", "rejections")}
state = {"setpoint": 20.0}  # what this device holds; reported in its shadow


def on_connect(client: mqtt.Client, _userdata, _flags, reason_code, _props) -> None:
    if reason_code.is_failure:  # e.g. 0x87: wrong client id, revoked certificate, suspended device
        print(f"refused by the broker: {reason_code}", flush=True)
        return
    client.publish(TOPICS["status"], "online", qos=1, retain=True)
    client.subscribe([(TOPICS["commands"], 1), (TOPICS["shadow/delta"], 1), (TOPICS["rejections"], 1)])
    client.publish(TOPICS["shadow/reported"], json.dumps({"state": state}), qos=1)
    print("connected", flush=True)


def on_message(client: mqtt.Client, _userdata, msg: mqtt.MQTTMessage) -> None:
    doc = json.loads(msg.payload)
    if msg.topic == TOPICS["commands"]:
        # {"command_id", "name", "params", "attempt", "expires_at"}: do it, then answer with the same id
        print(f"command {doc['name']} {doc['params']}", flush=True)
        client.publish(TOPICS["commands/ack"], json.dumps(
            {"command_id": doc["command_id"], "status": "succeeded", "result": {"done": doc["name"]}}), qos=1)
    elif msg.topic == TOPICS["shadow/delta"]:
        # {"version", "state": {key: desired value}, "timestamp"}: apply, then report what the device now holds
        state.update(doc["state"])
        client.publish(TOPICS["shadow/reported"], json.dumps({"state": state}), qos=1)
        print(f"shadow delta applied: {doc['state']}", flush=True)
    elif msg.topic == TOPICS["rejections"]:
        print(f"rejected: {doc['reason_code']}: {doc['reason']}", flush=True)


def main() -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{TENANT}.{DEVICE}", protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.crt"))
    ctx.load_cert_chain(os.path.join(CERTS, "device.crt"), os.path.join(CERTS, "device.key"))
    client.tls_set_context(ctx)
    client.will_set(TOPICS["status"], "offline", qos=1, retain=True)  # the broker publishes it if we vanish
    client.on_connect, client.on_message = on_connect, on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600  # commands queued while we are briefly away are kept
    client.connect(HOST, PORT, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    stop = threading.Event()
    deadline = time.monotonic() + RUN_S
    while not stop.wait(INTERVAL_S) and time.monotonic() < deadline:
        reading = {"ts": int(time.time() * 1000),
                   "values": {"temperature": round(20 + random.random() * 5, 2), "setpoint": state["setpoint"]}}
        # QoS 1: the broker's PUBACK means it has the message; whether the platform stored it is told on
        # the rejections topic (only refusals) and by the API
        client.publish(TOPICS["telemetry"], json.dumps(reading), qos=1).wait_for_publish(10)
    client.publish(TOPICS["status"], "offline", qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()

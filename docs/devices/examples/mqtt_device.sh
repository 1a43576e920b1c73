#!/bin/sh
# A device publishing one reading and its status with mosquitto_pub (docs/devices/mqtt.md): MQTT 5 over TLS
# with the device certificate; the client id must be exactly <tenant_id>.<device_id>.
#   env: MQTT_HOST, MQTT_PORT (default 18883), TENANT_ID, DEVICE_ID, CERT_DIR (ca.crt, device.crt, device.key
#        as `fleetstream admin create-device … --cert-dir` or POST /v1/devices/{id}/certificates give them)
set -eu
root="fs/$TENANT_ID/$DEVICE_ID"
tls="--cafile $CERT_DIR/ca.crt --cert $CERT_DIR/device.crt --key $CERT_DIR/device.key"
# shellcheck disable=SC2086
mosquitto_pub -h "$MQTT_HOST" -p "${MQTT_PORT:-18883}" $tls -V mqttv5 -i "$TENANT_ID.$DEVICE_ID" -q 1 \
  -t "$root/status" -r -m online
# shellcheck disable=SC2086
mosquitto_pub -h "$MQTT_HOST" -p "${MQTT_PORT:-18883}" $tls -V mqttv5 -i "$TENANT_ID.$DEVICE_ID" -q 1 \
  -t "$root/telemetry" -m "{\"ts\": $(($(date +%s) * 1000)), \"values\": {\"temperature\": 22.5, \"fan\": true}}"

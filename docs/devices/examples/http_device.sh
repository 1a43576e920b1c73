#!/bin/sh
# A device sending one reading over HTTP (docs/devices/http.md): a fresh single-use JWT per request.
#   env: FLEETSTREAM_URL, TENANT_ID, DEVICE_ID, DEVICE_KEY (its registered private key, PEM)
set -eu
here=$(dirname "$0")
token=$("$here/device_jwt.sh" "$TENANT_ID" "$DEVICE_ID" "$DEVICE_KEY")
now_ms=$(($(date +%s) * 1000))
curl -sS --fail-with-body -X POST "$FLEETSTREAM_URL/v1/ingest" \
  -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
  -d "{\"ts\": $now_ms, \"values\": {\"temperature\": 21.5, \"door_open\": false}}"
echo

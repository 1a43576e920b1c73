#!/bin/sh
# Registers a device's ES256 key for HTTP and CoAP (docs/devices/device-jwt.md): makes the key pair if
# DEVICE_KEY does not exist yet, signs the proof of possession with it, and posts the public half.
#   env: FLEETSTREAM_URL (e.g. http://localhost:18080), TENANT_TOKEN (a tenant token with devices:write),
#        TENANT_ID, DEVICE_ID, DEVICE_KEY (path of the private key, PEM; kept on the device)
set -eu
here=$(dirname "$0")
if [ ! -f "$DEVICE_KEY" ]; then
  umask 077
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DEVICE_KEY"
fi
pem_json=$(openssl pkey -in "$DEVICE_KEY" -pubout | awk '{printf "%s\\n", $0}')  # JSON string, \n-escaped
proof=$("$here/device_jwt.sh" "$TENANT_ID" "$DEVICE_ID" "$DEVICE_KEY" 300 fleetstream-key-registration)
body=$(printf '{"public_key_pem": "%s", "proof": "%s"}' "$pem_json" "$proof")
curl -sS --fail-with-body -X POST "$FLEETSTREAM_URL/v1/devices/$DEVICE_ID/keys" \
  -H "Authorization: Bearer $TENANT_TOKEN" -H "Content-Type: application/json" -d "$body"
echo

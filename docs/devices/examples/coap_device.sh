#!/bin/sh
# A device sending one reading over CoAP with libcoap's stock client (docs/devices/coap.md). The JWT goes in
# option 65000 (`-O 65000,<token>`): libcoap's coap-client 4.3.1 drops Uri-Query options past ~100 bytes, so
# the `jwt=` query form (for clients that cannot set an option by number, e.g. aiocoap-client) is not used here.
#   env: COAP_HOST, COAP_PORT (default 5683), TENANT_ID, DEVICE_ID, DEVICE_KEY
set -eu
here=$(dirname "$0")
token=$("$here/device_jwt.sh" "$TENANT_ID" "$DEVICE_ID" "$DEVICE_KEY")
coap-client-notls -m post -t json -B 30 -O "65000,$token" -e '{"values": {"temperature": 19.0, "humidity": 41}}' \
  "coap://$COAP_HOST:${COAP_PORT:-5683}/telemetry"

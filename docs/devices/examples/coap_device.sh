#!/bin/sh
# A device sending one reading over CoAP with libcoap's stock client (docs/devices/coap.md). The JWT goes in
# Uri-Query options "jwt=…" of at most 255 bytes each (RFC 7252), joined in order by the platform: a token of
# ~430 bytes becomes two. (Clients that can set option 65000 may put the whole token there instead.)
#   env: COAP_HOST, COAP_PORT (default 5683), TENANT_ID, DEVICE_ID, DEVICE_KEY
set -eu
here=$(dirname "$0")
token=$("$here/device_jwt.sh" "$TENANT_ID" "$DEVICE_ID" "$DEVICE_KEY")
query=$(printf '%s' "$token" | fold -w 250 | sed 's/^/jwt=/' | paste -sd '&' -)
coap-client-notls -m post -t json -B 30 -e '{"values": {"temperature": 19.0, "humidity": 41}}' \
  "coap://$COAP_HOST:${COAP_PORT:-5683}/telemetry?$query"

#!/bin/sh
# Prints a device JWT (docs/devices/device-jwt.md) signed with openssl only: no JWT library needed.
#   usage: device_jwt.sh TENANT_ID DEVICE_ID PRIVATE_KEY_PEM [LIFETIME_S] [AUDIENCE]
# AUDIENCE: fleetstream-ingest (default; HTTP and CoAP readings) or fleetstream-key-registration (the proof
# that registers the key, register_key.sh).
# The key is the device's ES256 (P-256) private key whose public half is registered at
# POST /v1/devices/{id}/keys; the header's kid is that key's id (base64url of the SHA-256 of its DER public key).
set -eu
tenant=$1 device=$2 key=$3 ttl=${4:-300} aud=${5:-fleetstream-ingest}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

kid=$(openssl pkey -in "$key" -pubout -outform DER 2>/dev/null | openssl dgst -sha256 -binary | b64url)
now=$(date +%s)
jti=$(openssl rand -hex 16)
header=$(printf '{"alg":"ES256","typ":"JWT","kid":"%s"}' "$kid" | b64url)
claims=$(printf '{"iss":"%s","sub":"%s","aud":"%s","iat":%s,"nbf":%s,"exp":%s,"jti":"%s"}' \
  "$tenant" "$device" "$aud" "$now" "$now" "$((now + ttl))" "$jti" | b64url)

# openssl writes an ASN.1 DER ECDSA signature; a JWT carries r and s as two 32-byte big-endian numbers
der=$(mktemp)
trap 'rm -f "$der"' EXIT
printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$key" -out "$der"
rs=$(openssl asn1parse -inform DER -in "$der" | awk -F: '/INTEGER/ {
  v = $NF; while (length(v) > 64 && substr(v, 1, 2) == "00") v = substr(v, 3)
  while (length(v) < 64) v = "0" v
  printf "%s", v }')
sig=$(printf '%s' "$rs" | sed 's/../\\x&/g' | xargs -0 printf '%b' | b64url)
printf '%s.%s.%s\n' "$header" "$claims" "$sig"

"""OTA firmware updates: content-addressed artifacts, signed manifests, expiring download links and
staged campaigns (adr/0080-0082; the device side is docs/ota-device-contract.md)."""

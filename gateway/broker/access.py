"""Who may connect at all: certificate serials, devices and whole tenants refused by the broker (adr/0100).

Locally this is the platform's Mosquitto access plugin (``fleetstream/stack/mosquitto_access.c``): a denied
identity is refused at CONNECT (MQTT 5 reason 0x87) and its live sessions are closed in the same step, so a
revocation or a suspension takes effect within one control round trip. The same plugin binds every device's
client id to its certificate (``<tenant>.<device>``). Which devices may use their namespace at all is the same
plugin's known set since adr/0171 (``DynSecAdmin.authorise_devices``); dynamic security keeps the platform's
identities and devices provisioned into it before. In production EMQX does this with its CRL check, client-id binding and a deny source
(helm/fleetstream/files/emqx-values.yaml, adr/0034).
"""

from __future__ import annotations

from .dynsec import BrokerAuthError, DynSecAdmin, device_username


class BrokerAccess:
    """:param control: the control-plane's broker connection (the ``fleetstream-admin`` identity)."""

    def __init__(self, control: DynSecAdmin):
        self.control = control

    def _send(self, verb: str, kind: str, values: list[str]) -> int:
        """Returns how many live sessions the broker closed."""
        if not values:
            return 0
        if not self.control.access_available:
            raise BrokerAuthError("the broker has no fleetstream access plugin (adr/0100)")
        closed = 0
        for value, answer in zip(values, self.control.call_access([f"{verb} {kind} {v}" for v in values]), strict=True):
            status, _, rest = answer.partition(" ")
            if status != "ok":
                raise BrokerAuthError(f"{verb} {kind} {value}: {rest or answer}")
            closed += int(rest or 0)
        return closed

    # Tenants: every device of the tenant, whatever certificate it presents.
    def suspend_tenant(self, tenant_id: str) -> int:
        return self._send("deny", "tenant", [tenant_id])

    def resume_tenant(self, tenant_id: str) -> int:
        return self._send("allow", "tenant", [tenant_id])

    # Devices: suspended or decommissioned.
    def suspend_device(self, tenant_id: str, device_id: str) -> int:
        return self._send("deny", "device", [device_username(tenant_id, device_id)])

    def resume_device(self, tenant_id: str, device_id: str) -> int:
        return self._send("allow", "device", [device_username(tenant_id, device_id)])

    # Certificates: one serial (lower-case hex, as issued), whatever other certificates the device holds.
    def revoke_certificates(self, serials: list[str]) -> int:
        return self._send("deny", "serial", [s.lower() for s in serials])

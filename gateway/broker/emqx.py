"""EMQX, the production broker, as the platform's broker adapter (adr/0139).

Two halves, both shaped by EMQX 5's documented interfaces:
- ``authorize``: the decision behind EMQX's HTTP authorization source (``POST /internal/broker/emqx/authz``,
  gateway/api/routes/broker_hooks.py). EMQX renders the request body from a template (username, client id,
  action, topic); the answer is HTTP 200 ``{"result": "allow" | "deny" | "ignore"}``. A device (username =
  certificate CN ``<tenant>.<device>``) may use only its own subtree, with its own CN as client id, while its
  tenant is active and the device is neither suspended nor decommissioned. Anything that is not a device
  identity is "ignore": the next source (the ACL file of helm/fleetstream/files/emqx-values.yaml) decides.
- ``EmqxAdmin``: what the control plane asks of a broker (``Admin.dynsec`` / ``Admin.access``) through EMQX's
  REST API: a suspension is a ban (username, or a username pattern for a whole tenant) plus a kick of the live
  sessions; a resume lifts the ban. Topic rights need no per-device call: the ACL and the hook derive them
  from the certificate.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from schemas.namespace import device_root

from .dynsec import BrokerAuthError, device_username

ALLOW, DENY, IGNORE = "allow", "deny", "ignore"
# a device certificate's CN as the platform issues it; platform services' CNs carry no dot
_DEVICE_CN = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_.:-]+)")


def authorize(req: dict, *, tenant_refused: Callable[[str], bool],
              device_cut: Callable[[str, str], bool]) -> str:
    """One EMQX authorization request → allow | deny | ignore. ``device_cut`` says whether a device is
    unknown, suspended or decommissioned."""
    username = str(req.get("username") or "")
    m = _DEVICE_CN.fullmatch(username)
    if m is None:
        return IGNORE
    tenant_id, device_id = m.groups()
    if str(req.get("clientid") or "") != username:
        return DENY  # the devices zone makes the client id the CN; anything else is a misconfigured listener
    topic = str(req.get("topic") or "")
    if req.get("action") not in ("publish", "subscribe", "all") or not topic.startswith(device_root(tenant_id, device_id) + "/"):
        return DENY
    if tenant_refused(tenant_id) or device_cut(tenant_id, device_id):
        return DENY
    return ALLOW


class EmqxAdmin:
    """The control plane's side of EMQX through its REST API (``/api/v5``, API key and secret as basic auth)."""

    access_available = True

    def __init__(self, api_url: str, key: str, secret: str, timeout: float = 10.0):
        self.api = api_url.rstrip("/")
        self._auth = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None,
              ok: tuple[int, ...] = (200, 204)) -> tuple[int, dict]:
        """(HTTP status, JSON answer or {}); a status outside ``ok`` or no answer raises BrokerAuthError."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method,
                                     headers={"Authorization": self._auth, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else {})
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return exc.code, {}
            raise BrokerAuthError(f"EMQX {method} {path}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise BrokerAuthError(f"EMQX {method} {path}: {exc}") from exc

    # -- bans and kicks -------------------------------------------------------------------------------------
    def _ban(self, as_: str, who: str, reason: str) -> None:
        # 400 ALREADY_EXISTS: banned before (a repeated suspension or the start-up reconcile)
        self._call("POST", "/banned", {"as": as_, "who": who, "reason": reason}, ok=(200, 204, 400))

    def _unban(self, as_: str, who: str) -> None:
        self._call("DELETE", f"/banned/{as_}/{urllib.parse.quote(who, safe='')}", ok=(200, 204, 404))

    def _kick(self, client_id: str) -> int:
        """1 when a live session was closed, 0 when the client was not connected (404)."""
        status, _ = self._call("DELETE", f"/clients/{urllib.parse.quote(client_id, safe='')}", ok=(200, 204, 404))
        return int(status != 404)

    def _clients_like(self, username_prefix: str) -> list[str]:
        ids, page = [], 1
        while True:
            q = urllib.parse.urlencode({"like_username": username_prefix, "page": page, "limit": 1000})
            _, answer = self._call("GET", f"/clients?{q}")
            ids += [c["clientid"] for c in answer.get("data", []) if str(c.get("username", "")).startswith(username_prefix)]
            if not answer.get("meta", {}).get("hasnext"):
                return ids
            page += 1

    # -- what Admin.access asks (gateway/broker/access.py) --------------------------------------------------
    def suspend_tenant(self, tenant_id: str) -> int:
        self._ban("username_re", f"^{re.escape(tenant_id)}\\.", "tenant suspended")
        return sum(self._kick(c) for c in self._clients_like(f"{tenant_id}."))

    def resume_tenant(self, tenant_id: str) -> int:
        self._unban("username_re", f"^{re.escape(tenant_id)}\\.")
        return 0

    def suspend_device(self, tenant_id: str, device_id: str) -> int:
        username = device_username(tenant_id, device_id)
        self._ban("username", username, "device suspended")
        return self._kick(username)

    def resume_device(self, tenant_id: str, device_id: str) -> int:
        self._unban("username", device_username(tenant_id, device_id))
        return 0

    def revoke_certificates(self, serials: list[str]) -> int:
        """EMQX refuses revoked certificates through its CRL check (refreshed every minute, emqx-values.yaml);
        a ban cannot name a serial, so the live session of a device losing its last valid certificate is cut
        by ``revoke_device``."""
        return 0

    # -- what Admin.dynsec asks (gateway/broker/dynsec.py) --------------------------------------------------
    def authorise_device(self, tenant_id: str, device_id: str) -> None:
        """Nothing to do: the ACL and the authorization hook derive a device's topics from its certificate."""

    def authorise_devices(self, tenant_id: str, device_ids: list[str]) -> None:
        """As ``authorise_device``."""

    def enable_device(self, tenant_id: str, device_id: str) -> None:
        """As ``authorise_device``; the ban is lifted by ``resume_device``."""

    def revoke_device(self, tenant_id: str, device_id: str) -> None:
        self._kick(device_username(tenant_id, device_id))

    def close(self) -> None:
        pass


class DeviceStatusCache:
    """Whether a device is cut off (unknown, suspended, decommissioned), cached for a few seconds: EMQX asks
    per client and topic (and caches the answer itself), and suspensions also kick at once (``EmqxAdmin``)."""

    def __init__(self, lookup: Callable[[str, str], str | None], ttl_s: float = 5.0, max_entries: int = 100_000):
        self.lookup, self.ttl_s, self.max_entries = lookup, ttl_s, max_entries
        self._seen: dict[tuple[str, str], tuple[float, bool]] = {}

    def __call__(self, tenant_id: str, device_id: str) -> bool:
        key, now = (tenant_id, device_id), time.monotonic()
        hit = self._seen.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        cut = self.lookup(tenant_id, device_id) in (None, "suspended", "decommissioned")
        if len(self._seen) >= self.max_entries:
            self._seen.clear()
        self._seen[key] = (now + self.ttl_s, cut)
        return cut

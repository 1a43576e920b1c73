"""The Schema Registry client every process uses at start-up (adr/0140).

``bind(settings)`` registers each record's schema from ``schemas/avro`` under its topics' subjects
(``schemas.subjects``; idempotent: an existing version keeps its id), makes sure each subject's compatibility
is at least BACKWARD, and binds the ids in ``schemas.codec``, with this client as the way to fetch a writer
schema the process meets by an id it does not know. After that the hot paths never call the registry.

Any Confluent-compatible registry works: Confluent Schema Registry, Karapace, Redpanda, Apicurio's
``/apis/ccompat/v7``; basic auth and a private CA through the settings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from schemas.codec import bind_ids
from schemas.subjects import SUBJECTS, registered_text

from .settings import Settings

log = logging.getLogger("fleetstream.schema_registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# the ids a supervisor registered, handed to the processes it starts (adr/0174): a JSON object with the registry,
# a fingerprint of the schemas the supervisor registered and the ids; not a setting (nothing to configure)
HANDED_IDS_ENV = "FLEETSTREAM_HANDED_SCHEMA_IDS"
# levels that check at least what BACKWARD checks; anything else on a subject is raised to BACKWARD
AT_LEAST_BACKWARD = {"BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}


class SchemaRegistryUnavailable(RuntimeError):
    """The registry did not answer (or answered 5xx): not a verdict on any schema or record."""


class IncompatibleSchema(RuntimeError):
    """The registry refused a schema as incompatible with its subject's versions (HTTP 409)."""


@dataclass
class Response:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class SchemaRegistry:
    """A small client of the Confluent Schema Registry REST API (the calls fleetstream makes). The standard
    library's HTTP: a few calls at start-up and one per writer schema met later need no more."""

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 ca_file: str | None = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if user:
            self._headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        self._tls = ssl.create_default_context(cafile=ca_file) if self.url.startswith("https:") else None
        self._lock = threading.Lock()  # one fetch per unknown id at a time

    @classmethod
    def from_settings(cls, s: Settings) -> SchemaRegistry:
        return cls(s.schema_registry_endpoint, user=s.schema_registry_user, password=s.schema_registry_password,
                   ca_file=str(s.schema_registry_ca_file) if s.schema_registry_ca_file else None)

    def close(self) -> None:
        pass  # no connections kept

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Response:
        req = urllib.request.Request(self.url + path, method=method, headers=self._headers,
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._tls) as r:
                resp = Response(r.status, r.read().decode())
        except urllib.error.HTTPError as exc:
            resp = Response(exc.code, exc.read().decode(errors="replace"))
        except (OSError, ValueError) as exc:  # refused, reset, timed out, TLS
            raise SchemaRegistryUnavailable(f"Schema Registry {self.url}: {exc}") from exc
        if resp.status_code >= 500:
            raise SchemaRegistryUnavailable(f"Schema Registry {self.url}: {method} {path}: {resp.status_code} {resp.text}")
        return resp

    def ready(self) -> bool:
        """Answers its API (the readiness probe of the local stack and of start-up)."""
        try:
            return self._call("GET", "/subjects").status_code == 200
        except SchemaRegistryUnavailable:
            return False

    def compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility level; None when it has none (the registry's default applies)."""
        r = self._call("GET", f"/config/{quote(subject, safe='')}")
        if r.status_code == 404:
            return None
        _raise_for(r, f"compatibility of {subject}")
        body = r.json()
        return body.get("compatibilityLevel") or body.get("compatibility")

    def set_compatibility(self, subject: str, level: str = "BACKWARD") -> None:
        r = self._call("PUT", f"/config/{quote(subject, safe='')}", {"compatibility": level})
        _raise_for(r, f"setting {subject} to {level}")

    def register(self, subject: str, schema: str) -> int:
        """The id of ``schema`` under ``subject``: its existing version's, or a new version's; raises
        ``IncompatibleSchema`` when the subject's compatibility rule refuses it."""
        r = self._call("POST", f"/subjects/{quote(subject, safe='')}/versions", {"schemaType": "AVRO", "schema": schema})
        if r.status_code == 409:
            raise IncompatibleSchema(f"{subject}: {_message(r)}")
        _raise_for(r, f"registering under {subject}")
        return int(r.json()["id"])

    def compatible(self, subject: str, schema: str, version: str = "latest") -> bool | None:
        """Whether ``subject``'s rule would accept ``schema`` against ``version`` (nothing registered); None
        when the subject has no such version yet (a new subject accepts anything)."""
        r = self._call("POST", f"/compatibility/subjects/{quote(subject, safe='')}/versions/{version}",
                       {"schemaType": "AVRO", "schema": schema})
        if r.status_code == 404:
            return None
        _raise_for(r, f"checking compatibility with {subject}")
        return bool(r.json()["is_compatible"])

    def schema(self, sid: int) -> dict[str, Any] | None:
        """The schema registered under id ``sid`` (parsed), None when the registry has none."""
        with self._lock:
            r = self._call("GET", f"/schemas/ids/{int(sid)}")
        if r.status_code == 404:
            return None
        _raise_for(r, f"schema id {sid}")
        return json.loads(r.json()["schema"])

    def wait_ready(self, timeout: float) -> None:
        deadline, pause = time.monotonic() + timeout, 0.2
        while not self.ready():
            if time.monotonic() >= deadline:
                raise SchemaRegistryUnavailable(f"Schema Registry {self.url} not answering after {timeout:.0f}s")
            time.sleep(pause)  # a registry starting beside us (a pod, the local stack)
            pause = min(pause * 2, 2.0)


def _message(r: Response) -> str:
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text


def _raise_for(r: Response, what: str) -> None:
    if r.status_code >= 400:
        raise RuntimeError(f"Schema Registry: {what}: HTTP {r.status_code}: {_message(r)}")


def register_all(reg: SchemaRegistry) -> dict[str, int]:
    """Registers every record's schema under its subjects (BACKWARD at least, set first); record type →
    the id to write it with (its first topic's, normally the only one: registries give one schema text one
    id, whatever the subject)."""
    ids: dict[str, int] = {}
    for subject, record in SUBJECTS.items():
        if reg.compatibility(subject) not in AT_LEAST_BACKWARD:
            reg.set_compatibility(subject, "BACKWARD")
        sid = reg.register(subject, registered_text(record))
        if ids.setdefault(record, sid) != sid:
            log.info("%s has id %s under %s and %s elsewhere; writing with %s", record, sid, subject,
                     ids[record], ids[record])
    return ids


def check_all(reg: SchemaRegistry) -> dict[str, str]:
    """Subject → "compatible", "incompatible" or "new": what the registry's rules say of the repo's
    ``.avsc`` files, registering nothing (``fleetstream schemas check``, a CI step against a real registry)."""
    verdicts = {}
    for subject, record in SUBJECTS.items():
        ok = reg.compatible(subject, registered_text(record))
        verdicts[subject] = "new" if ok is None else "compatible" if ok else "incompatible"
    return verdicts


def schemas_fingerprint() -> str:
    """What this code registers: every subject with its schema text, hashed."""
    h = hashlib.sha256()
    for subject, record in sorted(SUBJECTS.items()):
        h.update(f"{subject}\0{registered_text(record)}\0".encode())
    return h.hexdigest()


def handed_ids(s: Settings, ids: Mapping[str, int]) -> dict[str, str]:
    """The environment that lets a process started by the supervisor bind ``ids`` (registered by the
    supervisor against ``s``'s registry) without registering again (adr/0174)."""
    return {HANDED_IDS_ENV: json.dumps({"registry": s.schema_registry_endpoint, "schemas": schemas_fingerprint(),
                                        "ids": dict(ids)})}


def _handed(s: Settings) -> dict[str, int] | None:
    """The handed ids when they were registered at this registry for exactly this code's schemas; None
    otherwise (none handed, another registry, an ``.avsc`` edited since the supervisor started)."""
    text = os.environ.get(HANDED_IDS_ENV)
    if not text:
        return None
    try:
        handed = json.loads(text)
        if handed["registry"] != s.schema_registry_endpoint or handed["schemas"] != schemas_fingerprint():
            return None
        return {str(k): int(v) for k, v in handed["ids"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def bind(s: Settings, *, wait_s: float = 120.0) -> dict[str, int]:
    """Start-up of every process that reads or writes records: registers, binds the ids in
    ``schemas.codec`` and keeps a client for writer schemas met later by id. Returns record type → id.
    A process the local supervisor started binds the ids the supervisor registered instead, when they are
    for this registry and these schemas (adr/0174)."""
    reg = SchemaRegistry.from_settings(s)
    t0 = time.monotonic()
    handed = _handed(s)
    if handed is not None:
        try:
            bind_ids(handed, fetch=reg.schema)
        except ValueError:  # a record type without an id: register as any process does
            pass
        else:
            log.info("schema ids handed by the supervisor (registered at %s): %s", reg.url,
                     ", ".join(f"{k}={v}" for k, v in sorted(handed.items())))
            return handed
    reg.wait_ready(wait_s)
    ids = register_all(reg)
    bind_ids(ids, fetch=reg.schema)
    log.info("schema ids from %s in %.0f ms: %s", reg.url, (time.monotonic() - t0) * 1000,
             ", ".join(f"{k}={v}" for k, v in sorted(ids.items())))
    return ids

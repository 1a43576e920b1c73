"""The published topic contract (adr/0142): docs/asyncapi.yaml is what `fleetstream schemas asyncapi`
generates from schemas/, and it is a valid AsyncAPI 3.0 document by AsyncAPI's own JSON Schema."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from runtime.settings import Settings
from schemas import asyncapi, topics
from schemas.codec import load_schema

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SPEC = Path(os.environ.get("FLEETSTREAM_CACHE", Path.home() / ".cache" / "fleetstream")) \
    / "asyncapi-specs-6.11.1" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    assert SPEC.exists(), f"{SPEC} missing: run scripts/setup.sh (make setup fetches AsyncAPI's JSON Schema)"
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text()))


def test_committed_file_is_the_generated_one():
    assert COMMITTED.read_text() == asyncapi.render(), \
        "docs/asyncapi.yaml is stale: run `fleetstream schemas asyncapi` and commit the result"


def test_the_command_writes_it(tmp_path):
    out = tmp_path / "asyncapi.yaml"
    subprocess.run([sys.executable, "-m", "fleetstream.cli", "schemas", "asyncapi", "-o", str(out)], check=True,
                   cwd=ROOT, capture_output=True, timeout=120)
    assert out.read_text() == COMMITTED.read_text()


def test_valid_asyncapi_3(validator):
    doc = yaml.safe_load(COMMITTED.read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors[:5]
    # the validator does refuse what AsyncAPI 3 refuses (an operation without action, a bad cleanup policy)
    broken = copy.deepcopy(doc)
    del broken["operations"]["write-telemetry"]["action"]
    broken["channels"]["telemetry"]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] = ["forever"]
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_topic_is_published_as_it_is_created():
    doc = asyncapi.build()
    by_address = {c["address"]: c for c in doc["channels"].values()}
    assert set(by_address) == {t.name for t in topics.ALL} | {topics.TENANT_EXPORT.name}
    assert asyncapi.DEFAULT_PARTITIONS == Settings.model_fields["kafka_partitions"].default
    for t in [*topics.ALL, topics.TENANT_EXPORT]:
        kafka = by_address[t.name]["bindings"]["kafka"]
        assert kafka["partitions"] == (t.partitions or asyncapi.DEFAULT_PARTITIONS)
        cfg = t.config()
        assert kafka["topicConfiguration"]["cleanup.policy"] == [cfg["cleanup.policy"]]
        assert str(kafka["topicConfiguration"].get("retention.ms", "")) == cfg.get("retention.ms", "")
        (ref,) = by_address[t.name]["messages"].values()
        message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
        payload = doc["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
        assert payload["schema"] == load_schema(t.record)
        assert message["bindings"]["kafka"]["schemaIdPayloadEncoding"] == "confluent"


def test_a_tenants_export_topic_is_a_channel_its_credentials_read_and_shared_ones_need_platform_credentials():
    doc = asyncapi.build()
    channel = doc["channels"][asyncapi.TENANT_CHANNEL_ID]
    assert channel["address"] == topics.tenant_export_topic("{tenant_id}") == topics.TENANT_EXPORT.name
    assert set(channel["parameters"]) == {"tenant_id"} and channel["tags"] == [{"name": "tenant"}]
    assert any(w.startswith("streams: validate") for w in channel["x-fleetstream-writers"])
    assert any("republish" in w for w in channel["x-fleetstream-writers"])
    assert "tenant's Kafka credentials" in channel["x-fleetstream-readers"][0]
    assert "topic" not in channel["bindings"]["kafka"]  # a template names no one topic
    assert doc["operations"][f"read-{asyncapi.TENANT_CHANNEL_ID}"]["action"] == "receive"
    # a shared channel holds every tenant's records: its readers need platform credentials
    assert "platform credentials" in doc["channels"]["telemetry"]["description"]
    assert "may be read by data engineers" not in doc["info"]["description"]

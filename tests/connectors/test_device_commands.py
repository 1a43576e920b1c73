"""The named-command contract of site devices (adr/0152, docs/commands.md): names, the one params shape, the
old shapes still accepted and flagged, refusals with a reason, and which failures are left to the agent's
retry. Pure logic; the peers are exercised in tests/connectors/contract/."""

from __future__ import annotations

import json

import pytest

from connectors.device_commands import (
    CommandConfig,
    CommandRefused,
    DeviceTypeConfig,
    effective_commands,
    plan,
    succeeded,
    transient_failure,
)
from connectors.errors import ConfigError
from connectors.modbus.config import ModbusSiteConfig
from connectors.siteconfig import validate_site

COMMANDS = {c.name: c for c in [CommandConfig(name="open_valve", write={"valve": True}),
                                CommandConfig(name="set_temperature", write="setpoint"),
                                CommandConfig(name="reset", call="reset")]}


def _plan(name, params, can_call=True):
    return plan(name, json.dumps(params), "boiler-1", COMMANDS, can_call=can_call)


def test_write_takes_the_documented_shape_and_the_old_shapes_are_normalised_and_flagged():
    a = _plan("write", {"values": {"setpoint": 55.5, "valve": False}})
    assert (a.kind, a.values, a.deprecated_params) == ("write", {"setpoint": 55.5, "valve": False}, False)
    old = _plan("write", {"setpoint": 55.5})
    assert (old.values, old.deprecated_params) == ({"setpoint": 55.5}, True)
    old_modbus = _plan("write", {"metric": "setpoint", "value": 55.5})
    assert (old_modbus.values, old_modbus.deprecated_params) == ({"setpoint": 55.5}, True)
    with pytest.raises(CommandRefused, match='write needs params {"values"'):
        _plan("write", {})


def test_named_commands_map_to_writes_and_calls():
    assert _plan("open_valve", {}).values == {"valve": True}
    assert _plan("set_temperature", {"value": 61}).values == {"setpoint": 61}
    a = _plan("reset", {"args": [1]})
    assert (a.kind, a.method, a.args) == ("call", "reset", [1])
    c = _plan("call", {"method": "reset", "args": []})
    assert (c.kind, c.method) == ("call", "reset")


def test_unknown_names_and_wrong_params_are_refused_with_a_reason():
    with pytest.raises(CommandRefused, match="boiler-1 has no command 'explode'; it knows: call, open_valve, reset, "
                                             "set_temperature, write"):
        _plan("explode", {})
    with pytest.raises(CommandRefused, match="it knows: open_valve, reset, set_temperature, write"):
        _plan("call", {"method": "reset"}, can_call=False)  # Modbus has no calls
    with pytest.raises(CommandRefused, match="open_valve takes no params"):
        _plan("open_valve", {"value": 1})
    with pytest.raises(CommandRefused, match='set_temperature takes params {"value"'):
        _plan("set_temperature", {"setpoint": 1})
    with pytest.raises(CommandRefused, match="params must be a JSON object"):
        plan("write", "[1]", "d", {}, can_call=False)
    with pytest.raises(CommandRefused, match="not JSON"):
        plan("write", "{", "d", {}, can_call=False)


def test_a_link_failure_is_left_to_the_agent_until_the_last_attempt():
    first = transient_failure({"attempt": 1, "max_attempts": 4}, "cannot connect")
    assert not first.answered and "attempt 1 of 4" in first.reason
    last = transient_failure({"attempt": 4, "max_attempts": 4}, "cannot connect")
    assert last.answered and last.ack_status == "FAILED" and "last attempt (4 of 4): cannot connect" in last.reason


def test_the_result_reports_what_the_device_holds_and_where_it_differs():
    a = _plan("write", {"setpoint": 12.7})
    r = succeeded(a, {"setpoint": 12.7}, {"setpoint": 12.699999809265137})
    assert r.ok and r.result == {"written": {"setpoint": 12.7}, "holds": {"setpoint": 12.699999809265137},
                                 "differs": ["setpoint"], "deprecated_params": True}


def test_device_types_share_commands_and_a_device_overrides_them():
    types = {"boiler": DeviceTypeConfig(commands=[CommandConfig(name="purge", write={"valve": True})])}
    own = [CommandConfig(name="purge", write={"valve": False})]
    assert effective_commands("boiler", own, types)["purge"].write == {"valve": False}
    assert effective_commands("boiler", [], types)["purge"].write == {"valve": True}


def _site(commands, device_types=None):
    return {"site_id": "s", "tenant_id": "t", "device_types": device_types or {}, "gateways": [{
        "host": "h", "devices": [{"device_id": "b1", "unit_id": 1, "device_type": "boiler" if device_types else None,
                                  "commands": commands, "points": [
                                      {"metric": "setpoint", "address": 0, "writable": True},
                                      {"metric": "temp", "address": 1}]}]}]}


def test_site_file_commands_are_checked_against_the_device():
    site = validate_site(_site([{"name": "set", "write": "setpoint"}]), ModbusSiteConfig)
    assert site.gateways[0].devices[0].commands[0].name == "set"
    with pytest.raises(ConfigError, match="b1: commands: heat: 'temp' is not a writable point"):
        validate_site(_site([{"name": "heat", "write": {"temp": 1}}]), ModbusSiteConfig)
    with pytest.raises(ConfigError, match="this protocol has no methods to call"):
        validate_site(_site([{"name": "r", "call": "reset"}]), ModbusSiteConfig)
    with pytest.raises(ConfigError, match="'write' is built in"):
        validate_site(_site([{"name": "write", "write": "setpoint"}]), ModbusSiteConfig)
    with pytest.raises(ConfigError, match="b1: commands: purge: 'temp' is not a writable point"):
        validate_site(_site([], {"boiler": {"commands": [{"name": "purge", "write": {"temp": 0}}]}}), ModbusSiteConfig)
    bad_type = _site([])
    bad_type["gateways"][0]["devices"][0]["device_type"] = "kettle"
    with pytest.raises(ConfigError, match="device_type 'kettle' is not in device_types"):
        validate_site(bad_type, ModbusSiteConfig)

"""The console in a real browser against the real stack (issue 17): an operator signs in, sees a device go
online and its live chart move while it publishes, edits a shadow through a deliberate version conflict,
sends a command the device answers, acknowledges an alert and pauses a campaign; a viewer can do none of
the changes (the buttons are off, and the API refuses the same request from the page); another tenant's
device never appears. Waits are on conditions in the page (Playwright's auto-waiting `expect`)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from schemas.namespace import device_topics
from tests.gateway.helpers import bearer
from tests.ota.helpers import random_image, upload
from tests.streams.rulekit import RuleKit
from tests.utils.factories import publish_json, wait_for

PASSWORD = "console test password 1"
WAIT = 90_000  # ms: a busy shared machine


class LiveDevice:
    """A real MQTT device: says online, publishes a reading every 0.3 s while asked to, answers commands."""

    def __init__(self, factory, dev):
        self.dev, self.topics = dev, device_topics(dev.tenant_id, dev.device_id)
        self.client = factory.mqtt_client(dev)
        self.client.on_message = self._on_command
        self.client.subscribe(self.topics["commands"], qos=1)
        self.publishing = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def online(self):
        publish_json(self.client, self.topics["status"], "online")

    def _run(self):
        n = 0
        while not self.stop.wait(0.3):
            if self.publishing.is_set():
                n += 1
                self.client.publish(self.topics["telemetry"], json.dumps(
                    {"ts": int(time.time() * 1000), "values": {"temperature": 20 + (n % 10), "humidity": 40.0}}), qos=1)

    def _on_command(self, client, _u, msg):
        cmd = json.loads(msg.payload)
        ack = self.topics["command_ack"]
        client.publish(ack, json.dumps({"command_id": cmd["command_id"], "status": "acknowledged"}), qos=1)
        client.publish(ack, json.dumps({"command_id": cmd["command_id"], "status": "succeeded",
                                        "result": {"done": cmd["name"]}}), qos=1)

    def close(self):
        self.stop.set()
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def world(stack, factory, settings):
    # its own client: setting up (firmware uploads, rules) can take longer than the shared client's 10 s here
    gateway = httpx.Client(base_url=f"http://{settings.host}:{settings.gateway_port}", timeout=60)
    t = factory.tenant("console")
    tok = t.token(gateway)
    h = bearer(tok)
    boiler = factory.device(t, "boiler-1", device_type="boiler", tags=["site-a"])
    for role in ("operator", "viewer"):
        assert gateway.post("/v1/users", headers=h, json={"email": f"{role}@console.test", "role": role,
                                                          "password": PASSWORD}).status_code == 201
    other = factory.tenant("console-other")
    theirs = factory.device(other, f"theirs-{uuid.uuid4().hex[:6]}")
    # an active alert
    kit = RuleKit(settings, gateway, t)
    rid = kit.rule({"type": "threshold", "metric": "pressure", "op": ">", "value": 5},
                   actions=[{"type": "alert", "severity": "CRITICAL", "message": "pressure too high", "auto_clear": False}])

    def fired():  # the reading again every few seconds: the registry may not know boiler-1 yet on a busy machine
        kit.send("boiler-1", int(time.time() * 1000) - 1000, {"pressure": 9.0})
        return gateway.get("/v1/alerts", headers=h, params={"rule_id": rid}).json()["data"]

    wait_for(fired, timeout=240, interval=5, what="the alert")
    # a running campaign over two valves that never answer (it stays running until paused)
    dtype = f"valve-{uuid.uuid4().hex[:6]}"
    for v in ("1.0.0", "1.1.0"):
        assert upload(gateway, tok, dtype, v, random_image()).status_code == 201
    for i in range(2):
        factory.device(t, f"valve-{i}", device_type=dtype, tags=["site-b"])
    r = gateway.post("/v1/ota/campaigns", headers=h, json={"name": "valves 1.1.0", "target": {"device_type": dtype},
                                                           "target_version": "1.1.0", "waves": [50, 100]})
    assert r.status_code == 201, r.text
    live = LiveDevice(factory, boiler)
    yield type("World", (), {"api": gateway, "tenant": t, "token": tok, "h": h, "boiler": boiler, "theirs": theirs, "live": live,
                             "campaign": r.json()["id"], "url": f"http://{settings.host}:{settings.gateway_port}"})
    live.close()
    gateway.close()


def sign_in(browser, world, role: str, screenshot=None):
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    page = ctx.new_page()
    # failed API answers and page errors in the test's output, for whoever reads a failure
    page.on("response", lambda r: r.status >= 400 and print("console:", r.status, r.request.method, r.url))
    page.on("pageerror", lambda e: print("console page error:", e))
    page.goto(f"{world.url}/console/?tenant={world.tenant.name}")
    page.get_by_label("Email").fill(f"{role}@console.test")
    if screenshot:
        page.screenshot(path=str(screenshot))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Fleet", exact=True)).to_be_visible(timeout=WAIT)
    return ctx, page


def test_operator_sees_the_device_go_online_and_its_chart_move(browser, world, screenshots):
    ctx, page = sign_in(browser, world, "operator", screenshot=screenshots / "login.png")
    row = page.locator("tr[data-device='boiler-1']")
    expect(row).to_be_visible(timeout=WAIT)
    expect(page.locator(f"tr[data-device='{world.theirs.device_id}']")).to_have_count(0)
    world.live.online()
    world.live.publishing.set()
    expect(row.locator("[data-connection]")).to_have_attribute("data-connection", "online", timeout=WAIT)
    expect(page.locator("#count-online")).to_contain_text("1 online")
    page.screenshot(path=str(screenshots / "fleet.png"))

    row.get_by_role("link", name="boiler-1").click()
    expect(page.get_by_role("heading", name=re.compile("Device boiler-1"))).to_be_visible(timeout=WAIT)
    # the device publishes temperature; the chart starts on the first metric by name, which may be the
    # fixture's pressure (sent once, never live again): pick temperature as a person would
    expect(page.locator("tr[data-metric='temperature']")).to_be_visible(timeout=WAIT)
    page.get_by_label("Metric").select_option("temperature")
    chart = page.locator("svg.chart[aria-label^='temperature']")
    expect(chart).to_have_attribute("data-count", re.compile(r"[1-9]\d*"), timeout=WAIT)  # history or live
    first = int(chart.get_attribute("data-count"))
    # live points arrive over the WebSocket while the device publishes
    wait_for(lambda: int(chart.get_attribute("data-count")) >= first + 3, timeout=WAIT / 1000,
             what="live points on the chart")
    # a few more before the picture, so the committed screenshot shows a line that moved
    wait_for(lambda: int(chart.get_attribute("data-count")) >= first + 20, timeout=WAIT / 1000,
             what="more live points on the chart")
    page.screenshot(path=str(screenshots / "device.png"), full_page=True)

    # another tenant's device is not there, even by its URL
    page.goto(f"{world.url}/console/#/device/{world.theirs.device_id}")
    expect(page.get_by_role("alert")).to_contain_text("not found", timeout=WAIT)
    ctx.close()


def test_operator_edits_a_shadow_through_a_version_conflict_and_sends_a_command(browser, world, screenshots):
    ctx, page = sign_in(browser, world, "operator")
    page.goto(f"{world.url}/console/#/device/boiler-1")
    editor = page.get_by_label(re.compile("Change desired state"))
    expect(editor).to_be_enabled(timeout=WAIT)
    editor.fill('{"setpoint": 21}')
    page.get_by_role("button", name="Save desired state").click()
    expect(page.locator("#shadow-desired")).to_contain_text('"setpoint": 21', timeout=WAIT)
    mine = int(page.locator("#shadow-version").inner_text())

    # someone else changes it meanwhile (through the API), then our next edit is based on the old version
    r = world.api.patch("/v1/devices/boiler-1/shadow/desired", headers={**world.h, "If-Match": str(mine)},
                      json={"setpoint": 25, "mode": "eco"})
    assert r.status_code == 200, r.text
    editor.fill('{"setpoint": 22}')
    page.get_by_role("button", name="Save desired state").click()
    conflict = page.locator("#shadow-conflict")
    expect(conflict).to_contain_text("Version conflict", timeout=WAIT)
    expect(conflict).to_contain_text('"setpoint": 25')  # theirs shown...
    expect(editor).to_have_value('{"setpoint": 22}')  # ...ours kept
    page.screenshot(path=str(screenshots / "shadow-conflict.png"), full_page=True)
    conflict.get_by_role("button", name=re.compile("Apply my edit")).click()
    expect(page.locator("#shadow-desired")).to_contain_text('"setpoint": 22', timeout=WAIT)
    expect(page.locator("#shadow-desired")).to_contain_text('"mode": "eco"')  # their other change survives
    assert world.api.get("/v1/devices/boiler-1/shadow", headers=world.h).json()["desired"] == {"setpoint": 22, "mode": "eco"}

    page.get_by_label("Command", exact=True).fill("reboot")
    page.get_by_role("button", name="Send command").click()
    expect(page.locator("#command-status")).to_have_attribute("data-status", "succeeded", timeout=WAIT)
    expect(page.locator("#command-state")).to_contain_text("acknowledged")
    ctx.close()


def test_operator_acknowledges_an_alert_and_pauses_a_campaign(browser, world, screenshots):
    ctx, page = sign_in(browser, world, "operator")
    page.get_by_role("link", name="Alerts").click()
    row = page.locator("tr[data-alert]").filter(has_text="pressure too high")
    expect(row.locator("[data-state]")).to_have_text("ACTIVE", timeout=WAIT)
    expect(page.locator("main")).not_to_contain_text("null")  # an absent note is absent, not the word
    page.screenshot(path=str(screenshots / "alerts.png"))
    row.get_by_role("button", name=re.compile("Acknowledge")).click()
    expect(row.locator("[data-state]")).to_have_text("ACKNOWLEDGED", timeout=WAIT)

    page.get_by_role("link", name="OTA campaigns").click()
    row = page.locator(f"tr[data-campaign='{world.campaign}']")
    expect(row.locator("[data-state]")).to_contain_text("running", timeout=WAIT)
    row.get_by_role("button", name="Pause").click()
    expect(row.locator("[data-state]")).to_contain_text("paused", timeout=WAIT)
    page.screenshot(path=str(screenshots / "ota.png"))
    assert world.api.get(f"/v1/ota/campaigns/{world.campaign}", headers=world.h).json()["state"] == "paused"
    ctx.close()

    # every one of those actions is in the audit log under the operator's name
    entries = world.api.get("/v1/audit", headers=world.h, params={"limit": 200}).json()["data"]
    users = {u["email"]: u["id"] for u in world.api.get("/v1/users", headers=world.h).json()["data"]}
    mine = {(e["action"], e["target"]) for e in entries if e["actor"] == f"user:{users['operator@console.test']}"}
    assert ("api.post", f"/v1/ota/campaigns/{world.campaign}/pause") in mine
    assert any(t.endswith("/acknowledge") for a, t in mine) and ("api.patch", "/v1/devices/boiler-1/shadow/desired") in mine


def test_operator_dry_runs_and_saves_a_rule(browser, world, screenshots):
    ctx, page = sign_in(browser, world, "operator")
    page.get_by_role("link", name="Rules").click()
    expect(page.locator("tr[data-rule]").first).to_be_visible(timeout=WAIT)  # the fixture's pressure rule
    editor = page.get_by_label(re.compile("Rule document"))
    editor.fill(json.dumps({"name": "Pressure watch", "scope": {"device_types": ["boiler"]},
                            "condition": {"type": "threshold", "metric": "pressure", "op": ">", "value": 5},
                            "actions": [{"type": "alert", "severity": "MAJOR", "message": "pressure above 5"}]}, indent=2))
    page.get_by_label("Dry-run device").fill("boiler-1")
    page.get_by_label("Hours back").fill("2")
    # the fixture's readings of 9.0 are stored by now (they fired its alert): the dry run replays them
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#dry-run-result")).to_contain_text("boiler-1 is in scope", timeout=WAIT)
    expect(page.locator("#dry-run-transitions")).to_have_text(re.compile(r"^[1-9]\d* transitions"))
    expect(page.locator("#dry-run-result").get_by_role("cell", name="fire").first).to_be_visible()
    page.screenshot(path=str(screenshots / "rules.png"), full_page=True)
    page.get_by_role("button", name="Save rule").click()
    row = page.locator("tr[data-rule]").filter(has_text="Pressure watch")
    expect(row).to_contain_text("pressure > 5", timeout=WAIT)
    rule_id = row.get_attribute("data-rule")
    # an edit is a new version, sent with the version it started from
    row.get_by_role("button", name="Edit rule Pressure watch").click()
    editor.fill(editor.input_value().replace('"value": 5', '"value": 6'))
    page.get_by_role("button", name="Save rule").click()
    expect(row).to_contain_text("pressure > 6", timeout=WAIT)
    r = world.api.get(f"/v1/rules/{rule_id}", headers=world.h).json()
    assert r["version"] == 2 and r["document"]["condition"]["value"] == 6
    # someone else saves meanwhile: our next save (based on version 2) is refused and shown, not applied
    doc = {**r["document"], "description": "theirs"}
    assert world.api.put(f"/v1/rules/{rule_id}", headers={**world.h, "If-Match": "2"}, json=doc).status_code == 200
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("#rule-result")).to_contain_text("Version conflict", timeout=WAIT)
    assert world.api.get(f"/v1/rules/{rule_id}", headers=world.h).json()["document"]["description"] == "theirs"
    ctx.close()


def test_viewer_cannot_do_what_an_operator_can(browser, world, screenshots):
    ctx, page = sign_in(browser, world, "viewer")
    page.goto(f"{world.url}/console/#/device/boiler-1")
    expect(page.get_by_role("button", name="Send command")).to_be_disabled(timeout=WAIT)
    expect(page.get_by_role("button", name="Save desired state")).to_be_disabled()
    # the page's own session, asking the API directly, is refused the same way
    status = page.evaluate("""async () => {
        const csrf = document.cookie.split('; ').find((c) => c.startsWith('fs_csrf=')).slice(8);
        const r = await fetch('/v1/devices/boiler-1/commands', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: '{"name": "reboot"}'});
        return [r.status, (await r.json()).error.code];
    }""")
    assert status == [403, "insufficient_scope"]
    page.get_by_role("link", name="Alerts").click()
    expect(page.locator("tr[data-alert]").first).to_be_visible(timeout=WAIT)
    for b in page.get_by_role("button", name=re.compile("Acknowledge|Clear")).all():
        expect(b).to_be_disabled()
    page.get_by_role("link", name="OTA campaigns").click()
    expect(page.get_by_text("aborting campaigns need the ota:write scope")).to_be_visible(timeout=WAIT)
    expect(page.get_by_role("link", name="Audit log")).to_be_hidden()
    ctx.close()


def test_audit_page_names_the_user(browser, world, screenshots):
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    page = ctx.new_page()
    r = page.request.post(f"{world.url}/v1/users", headers=world.h,
                          data={"email": "admin@console.test", "role": "admin", "password": PASSWORD})
    assert r.status in (201, 409)
    ctx.close()
    ctx, page = sign_in(browser, world, "admin")
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name=re.compile("operator@console.test")).first).to_be_visible(timeout=WAIT)
    page.screenshot(path=str(screenshots / "audit.png"))
    ctx.close()

"""The ``fleetstream`` command: the local stack, process roles, admin bootstrap and topic tools."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fleetstream.sim.payloads import PAYLOADS
from runtime.settings import Settings


class UserError(Exception):
    """A mistake the user can fix: shown as one line saying what to do, never as a traceback."""


def _settings(args) -> Settings:
    overrides = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "kafka_brokers", None):
        overrides["kafka_brokers"] = args.kafka_brokers
    return Settings(**overrides)


def _refuse_kafka(s: Settings) -> bool:
    """True (after one line on stderr) when the brokers refuse this process's Kafka credentials: a wrong
    password fails start-up instead of being retried forever (adr/0130). Brokers that do not answer yet are
    an outage, not a mistake: the process starts and its clients keep retrying (a connector still takes
    readings from the broker's queue once Kafka is back, adr/0104), after one warning line."""
    from runtime.kafka import KafkaRefused, KafkaUnreachable
    from runtime.kafka_security import KafkaSecurityError

    try:  # a refusal comes within a second or two of reaching a broker; waiting longer only delays start-up
        s.kafka.verify(timeout_s=15)
    except (KafkaRefused, KafkaSecurityError) as exc:
        print(f"fleetstream: {exc}", file=sys.stderr)
        return True
    except KafkaUnreachable as exc:
        print(f"fleetstream: warning: {exc}; starting anyway, its clients keep retrying", file=sys.stderr)
    return False


def _refuse_kafka_settings(s: Settings) -> bool:
    """True (after one line on stderr) when the Kafka security settings could not connect or name a test-only
    mode without its dev flag (adr/0130, adr/0191): what `up` checks before starting anything."""
    from runtime.kafka_security import KafkaSecurityError

    try:
        s.kafka_security_settings  # noqa: B018 - validated when built
    except KafkaSecurityError as exc:
        print(f"fleetstream: {exc}", file=sys.stderr)
        return True
    return False


def _refuse_unsafe(s: Settings, role: str) -> bool:
    """True (after saying why on stderr) when FLEETSTREAM_ENV=prod lacks a secret ``role`` needs (adr/0112)."""
    from runtime import production

    try:
        production.check(s, role)
    except production.UnsafeConfiguration as exc:
        print(f"fleetstream: {exc}", file=sys.stderr)
        return True
    return False


# -- stack -----------------------------------------------------------------------------------------------
def cmd_up(args) -> int:
    from fleetstream.stack import supervisor
    from fleetstream.stack.process import StartupError

    s = _settings(args)
    if _refuse_unsafe(s, "up") or _refuse_kafka_settings(s):
        return 2
    state = supervisor.read_state(s)
    if state and supervisor.pid_alive(state.get("supervisor_pid")):
        print(f"fleetstream is already running (pid {state['supervisor_pid']}); `fleetstream down` stops it")
        return 1
    sites = []
    if args.sites:
        from connectors.errors import ConfigError
        from connectors.siteconfig import load_site_dir

        try:  # every file valid, or nothing starts
            sites = [(f.protocol, f.site.site_id, f.path) for f in load_site_dir(args.sites)]
        except ConfigError as exc:
            print(f"fleetstream: --sites {args.sites}: invalid site files:\n{exc}", file=sys.stderr)
            return 2
    try:
        replicas = supervisor.parse_replicas(args.replicas)
    except ValueError as exc:
        print(f"fleetstream: {exc}", file=sys.stderr)
        return 2
    if args.detach:
        return _up_detached(s, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stack = supervisor.Stack(s, replicas)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    t0 = time.monotonic()
    try:
        stack.start_infra()
        stack.write_state()
        # the demo fleet needs only the infrastructure: made while the platform's processes start (adr/0209)
        demo_fleet = _in_background(_demo_fleet, s, args.devices) if args.with_fleet else None
        stack.start_platform()
        stack.write_state()
        if sites:
            stack.start_sites(sites)
            stack.write_state()
            print("fleetstream: site connectors: " + ", ".join(f"{p} {i} ({f})" for p, i, f in sites), flush=True)
        demo = None
        if demo_fleet is not None:
            demo = demo_fleet.result()
            sim = stack.platform_child("simulator")
            sim.argv = [sys.executable, "-m", "fleetstream.cli", "simulate", "--fleet", demo["fleet_file"],
                        "--payload", "plc"]  # carries the `temperature` the printed curl reads
            stack._spawn(sim)
            stack.write_state()
        took = time.monotonic() - t0
        _print_welcome(s, demo, took, stack.timings)
        stack.watch(stopping)
    except StartupError as exc:
        print(f"\nfleetstream: start-up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        print("fleetstream: stopping…", flush=True)
        stack.stop()
        print("fleetstream: stopped", flush=True)
    return 0


def _in_background(fn, *args):
    """``fn(*args)`` on a thread of its own; the future's ``result()`` waits for it and raises what it raised."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix=fn.__name__)
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)


def _up_detached(s: Settings, args) -> int:
    from fleetstream.stack import supervisor

    s.logs_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "fleetstream.cli", "--data-dir", str(s.root), "up",
            "--kafka-brokers", str(s.kafka_brokers)]
    if args.with_fleet:
        argv += ["--with-fleet", "--devices", str(args.devices)]
    if args.sites:
        argv += ["--sites", str(Path(args.sites).resolve())]
    if args.replicas:
        argv += ["--replicas", args.replicas]
    log_file = s.logs_dir / "supervisor.log"
    with open(log_file, "ab") as out:
        start = out.tell()  # this run's part of the log (it is appended to)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"fleetstream failed to start; see {log_file}", file=sys.stderr)
            return 1
        state = supervisor.read_state(s)
        if state and "gateway" in state.get("children", {}) and _gateway_up(s):
            if not args.with_fleet:
                print(f"fleetstream is up (pid {proc.pid}); `fleetstream status`")
                return 0
            with open(log_file, "rb") as f:  # the welcome comes once the demo fleet runs
                f.seek(start)
                welcome = f.read().decode(errors="replace").partition("\nfleetstream is up")[2]
            if welcome:
                print("fleetstream is up" + welcome[-4000:])
                return 0
        time.sleep(0.5)
    print("fleetstream did not become ready in 180 s", file=sys.stderr)
    return 1


def _gateway_up(s: Settings) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{s.host}:{s.gateway_port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _demo_fleet(s: Settings, n: int) -> dict:
    """Creates (once) a demo tenant and n devices with certificates; reused on later `up`s."""
    from gateway.admin import Admin

    fleet_file = s.root / "demo" / "fleet.json"
    if fleet_file.exists():
        demo = json.loads(fleet_file.read_text())
        if len(demo["devices"]) >= n:
            if "console_user" not in demo:  # a data dir from before the console
                demo["console_user"] = _demo_owner(s, demo["tenant_id"])
                fleet_file.write_text(json.dumps(demo, indent=2))
            return demo
    admin = Admin(s)
    try:
        tenant = admin.create_tenant(f"demo-{int(time.time())}")
        devices = []
        for i in range(n):
            dev = f"sensor-{i:03d}"
            admin.create_device(tenant["tenant_id"], dev, cert_dir=s.root / "demo" / "devices" / dev,
                                device_type="environment-sensor", tags=["demo"])
            devices.append({"device_id": dev, "cert_dir": str(s.root / "demo" / "devices" / dev)})
    finally:
        admin.close()
    demo = {**tenant, "devices": devices, "fleet_file": str(fleet_file),
            "console_user": _demo_owner(s, tenant["tenant_id"])}
    fleet_file.parent.mkdir(parents=True, exist_ok=True)
    fleet_file.write_text(json.dumps(demo, indent=2))
    fleet_file.chmod(0o600)
    return demo


def _demo_owner(s: Settings, tenant_id: str) -> dict:
    """The demo tenant's first console user, an owner with a generated password (kept in fleet.json, 0600)."""
    from gateway.crud.users import add_user
    from gateway.db.session import Database

    db = Database(s.app_dsn, max_size=1)
    db.open()
    try:
        _, password = add_user(db, tenant_id, "owner@demo.local", "owner", name="Demo owner", actor="fleetstream-up")
    finally:
        db.close()
    return {"email": "owner@demo.local", "password": password}


def _print_welcome(s: Settings, demo: dict | None, took: float, timings: dict) -> None:
    print(f"\nfleetstream is up in {took:.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in timings.items())})")
    print(f"  gateway     {s.gateway_url}   (OpenAPI: {s.gateway_url}/docs)")
    print(f"  MQTT (mTLS) mqtts://{s.public_host}:{s.mqtt_tls_port}   CA: {s.pki_dir / 'ca.crt'}")
    print(f"  Kafka       {s.bootstrap_servers}   (fleetstream topics tail fleetstream.telemetry)")
    print(f"  Schemas     {s.schema_registry_endpoint}   (Schema Registry; values: Confluent wire format, subjects <topic>-value)")
    print(f"  logs        {s.logs_dir}")
    if demo:
        d0 = demo["devices"][0]["device_id"]
        print(f"\n  demo tenant {demo['name']}: client_id={demo['client_id']} client_secret={demo['client_secret']}")
        user = demo.get("console_user")
        if user:
            print(f"  console     {s.gateway_url}/console/?tenant={demo['name']}")
            print(f"              sign in as {user['email']} / {user['password']} (owner; add people under Users)")
        print(f"  {len(demo['devices'])} simulated devices publish every second. Read one:\n")
        print(f"  TOKEN=$(curl -s -d grant_type=client_credentials -d client_id={demo['client_id']} \\\n"
              f"      -d client_secret={demo['client_secret']} {s.gateway_url}/v1/oauth/token | "
              "python3 -c 'import json,sys;print(json.load(sys.stdin)[\"access_token\"])')")
        print(f"  curl -s -H \"Authorization: Bearer $TOKEN\" \"{s.gateway_url}/v1/devices/{d0}/telemetry?metric=temperature&limit=5\"")
    print("\n  Ctrl-C stops everything.\n", flush=True)


def cmd_down(args) -> int:
    from fleetstream.stack import supervisor

    s = _settings(args)
    if supervisor.stop_running(s):
        print("fleetstream stopped")
    else:
        print("fleetstream is not running")
    return 0


def cmd_status(args) -> int:
    from fleetstream.stack import status

    st = status.collect(_settings(args))
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print(f"fleetstream {'running' if st['running'] else 'not running'}  (data: {st['data_dir']})")
        for name, c in st["components"].items():
            extra = "  ".join(f"{k}={v}" for k, v in c.items() if k not in ("state", "stats"))
            print(f"  {name:<16} {c['state']:<8} {extra}")
    return 0 if all(c["state"] == "up" for c in st["components"].values()) else 3


# -- process roles ---------------------------------------------------------------------------------------
def _observe(s: Settings, role: str) -> None:
    """Logs in the configured format; a /metrics port for roles other than the gateway (adr/0094)."""
    from runtime import observability

    observability.configure_logging(role, s.log_format)
    if role != "gateway":
        observability.serve_metrics(s, role)


def _bind_schema_ids(s: Settings) -> None:
    """Every process that reads or writes records registers and binds its schema ids first (adr/0140)."""
    from runtime.schema_registry import bind

    bind(s)


def cmd_run(args) -> int:
    s = _settings(args)
    if _refuse_unsafe(s, args.role) or _refuse_kafka(s):
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _observe(s, args.role)
    _bind_schema_ids(s)
    if args.role == "gateway":
        import uvicorn

        from gateway.app import create_app

        uvicorn.run(create_app(s), host=s.host, port=s.gateway_port, log_level="warning")
    elif args.role == "streams":
        from streams.worker import run

        sys.argv = [sys.argv[0], "worker"]
        run(s)
    elif args.role == "sink":
        _run_sink(s)
    return 0


def _run_sink(s: Settings) -> None:
    """The ClickHouse sinks as their own process (server mode, or chdb on a path no gateway holds)."""
    from sinks.clickhouse.client import ClickHouse
    from sinks.clickhouse.runner import run_forever
    from sinks.clickhouse.schema import create_all

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ch = ClickHouse(s.chdb_dsn, cluster=s.clickhouse_cluster)
    try:
        create_all(ch)
        run_forever(ch, stop, kafka=s.kafka, group_prefix=s.sink_group_prefix,
                    batch_size=s.sink_batch_size, batch_ms=s.sink_batch_ms,
                    commit_delay_ms=s.sink_test_commit_delay_ms)
    finally:
        ch.close()


def cmd_connector(args) -> int:
    s = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    kinds = ("mqtt", "modbus", "opcua", "coap")
    if args.kind not in kinds:
        print(f"unknown connector {args.kind!r}; available: {', '.join(kinds)}", file=sys.stderr)
        return 2
    if _refuse_unsafe(s, f"connector-{args.kind}") or _refuse_kafka(s):
        return 2
    import importlib

    _observe(s, f"connector-{args.kind}")
    _bind_schema_ids(s)
    run = importlib.import_module(f"connectors.{args.kind}.__main__").run
    return run(s, Path(args.config) if args.config else None)


# -- admin and tools -------------------------------------------------------------------------------------
def cmd_admin(args) -> int:
    from fleetstream.stack.process import port_open
    from gateway.admin import Admin

    s = _settings(args)
    if _refuse_unsafe(s, "admin"):
        return 2
    if not port_open(s.host, s.postgres_port):  # at once, not after the pool's 15 s of retries
        raise UserError(f"cannot reach PostgreSQL at {s.host}:{s.postgres_port}; is the stack running? "
                        "`fleetstream up --detach` starts it, `fleetstream status` shows it")
    # the pool's retry warnings would bury the one line that says what to do (main() prints it)
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    _bind_schema_ids(s)  # what it changes reaches the registry topics through the outbox, encoded here
    admin = Admin(s)
    try:
        if args.admin_cmd == "create-tenant":
            out = admin.create_tenant(args.name)
        else:
            tenant_id = resolve_tenant(admin, args.tenant)
            out = admin.create_device(tenant_id, args.device, cert_dir=Path(args.cert_dir) if args.cert_dir else None)
    finally:
        admin.close()
    _print_fields(out, args.json)
    return 0


def _print_fields(out: dict, as_json: bool) -> None:
    """An admin command's answer: JSON with --json, else one ``key: value`` line per field."""
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


def resolve_tenant(admin, ref: str) -> str:
    """The id of the tenant whose id or name is ``ref``."""
    import uuid

    with admin.platform_tx() as conn:
        row = None
        try:
            row = conn.execute("select id from tenants where id = %s", (str(uuid.UUID(ref)),)).fetchone()
        except ValueError:  # not an id: a name
            pass
        if row is None:
            row = conn.execute("select id from tenants where name = %s", (ref,)).fetchone()
    if row is None:
        raise UserError(f"no tenant named or with id {ref!r}; create one with `fleetstream admin create-tenant NAME`")
    return str(row["id"])


def cmd_create_user(args) -> int:
    import psycopg

    from fleetstream.stack.process import port_open
    from gateway.crud.users import add_user
    from gateway.db.session import Database

    s = _settings(args)
    if _refuse_unsafe(s, "admin"):
        return 2
    if not port_open(s.host, s.postgres_port):
        raise UserError(f"cannot reach PostgreSQL at {s.host}:{s.postgres_port}; is the stack running? "
                        "`fleetstream up --detach` starts it, `fleetstream status` shows it")
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    db = Database(s.app_dsn, max_size=1)
    db.open()
    try:
        row, password = add_user(db, args.tenant, args.email, args.role, password=password, name=args.name)
    except LookupError:
        raise UserError(f"no tenant named or with id {args.tenant!r}; "
                        "create one with `fleetstream admin create-tenant NAME`") from None
    except psycopg.errors.UniqueViolation:
        raise UserError(f"{args.email} is already a user of {args.tenant}") from None
    except (ValueError, psycopg.errors.CheckViolation) as exc:
        raise UserError(f"create-user: {str(exc).splitlines()[0]}") from None
    finally:
        db.close()
    out = {"user_id": str(row["id"]), "tenant_id": str(row["tenant_id"]), "email": row["email"], "role": row["role"],
           "password": None if args.password_stdin else password, "console": f"{s.gateway_url}/console/"}
    _print_fields(out, args.json)
    return 0


def cmd_platform_token(args) -> int:
    """Whoever can read the signing keys is the platform: the token is minted with them, no server call."""
    from gateway.auth.tokens import PLATFORM_SCOPE, KeyRing

    s = _settings(args)
    if _refuse_unsafe(s, "platform-token"):
        return 2
    ring = KeyRing(s.jwt_keys_dir)
    print(ring.issue(tenant_id="", client_id="platform-admin-cli", scopes=[PLATFORM_SCOPE], ttl_s=args.ttl,
                     platform_admin=True))
    return 0


def cmd_rotate_signing_key(args) -> int:
    from gateway.auth.tokens import KeyRing

    s = _settings(args)
    print(KeyRing(s.jwt_keys_dir).rotate())
    return 0


def cmd_topics_tail(args) -> int:
    from confluent_kafka import TopicPartition

    from runtime.kafka import READER
    from schemas import codec_for

    s = _settings(args)
    _bind_schema_ids(s)
    c = s.kafka.consumer(f"fleetstream-tail-{time.time_ns()}", READER,
                         {"auto.offset.reset": "earliest" if args.from_beginning else "latest"})
    md = c.list_topics(args.topic, timeout=10).topics.get(args.topic)
    if md is None or md.error is not None:
        print(f"no topic {args.topic!r}", file=sys.stderr)
        return 2
    c.assign([TopicPartition(args.topic, p, -2 if args.from_beginning else -1) for p in md.partitions])
    shown, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
    try:
        while (args.n is None or shown < args.n) and (deadline is None or time.monotonic() < deadline):
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            try:
                value = codec_for(m.value()).decode(m.value())
            except Exception:
                value = {"undecoded": m.value().decode("utf-8", "replace")}
            if "raw" in value and isinstance(value["raw"], bytes):
                value["raw"] = value["raw"].decode("utf-8", "replace")
            print(json.dumps({"partition": m.partition(), "offset": m.offset(),
                              "key": m.key().decode() if m.key() else None, "value": value}, default=str), flush=True)
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    return 0


def cmd_schemas_check(args) -> int:
    """CI against a real registry: would it accept every ``.avsc`` of this tree? Registers nothing (adr/0140)."""
    from runtime.schema_registry import SchemaRegistry, check_all

    reg = SchemaRegistry.from_settings(_settings(args))
    verdicts = check_all(reg)
    for subject, verdict in verdicts.items():
        print(f"{verdict:<13}{subject}")
    refused = [s for s, v in verdicts.items() if v == "incompatible"]
    if refused:
        print(f"{len(refused)} schema change(s) the registry at {reg.url} would refuse", file=sys.stderr)
    return 1 if refused else 0


def cmd_schemas_asyncapi(args) -> int:
    """The topic contract as AsyncAPI 3 (adr/0142): to docs/asyncapi.yaml, or stdout with ``-o -``."""
    from schemas.asyncapi import render

    text = render()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


def cmd_simulate(args) -> int:
    from fleetstream.sim.run import simulate

    summary = simulate(_settings(args), fleet_file=Path(args.fleet) if args.fleet else None, devices=args.devices,
                       rate=args.rate, interval=args.interval, protocol=args.protocol, qos=args.qos,
                       payload=args.payload, duration=args.duration, workers=args.workers)
    return 0 if summary["connected"] else 1


def cmd_bench(args) -> int:
    from fleetstream.bench.cli import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetstream", description=__doc__)
    p.add_argument("--data-dir", help="overrides FLEETSTREAM_DATA_DIR")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start the local stack (foreground; Ctrl-C stops it)")
    up.add_argument("--detach", action="store_true", help="start in the background and return when ready")
    up.add_argument("--with-fleet", action="store_true", help="also run a simulated demo fleet")
    up.add_argument("--devices", type=int, default=20)
    up.add_argument("--sites", metavar="DIR", help="also run a Modbus/OPC-UA connector per site file (*.yaml) in DIR "
                    "(docs/sites.md); an invalid file stops `up` before anything starts")
    up.add_argument("--kafka-brokers", type=int, help="KRaft nodes; 3 = a local SASL_SSL cluster with RF 3 / min ISR 2 "
                    "(overrides FLEETSTREAM_KAFKA_BROKERS)")
    up.add_argument("--replicas", default="", metavar="ROLE=N,...",
                    help="processes per role, e.g. streams=2,mqtt=2,gateway=2 (adr/0134)")
    up.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop a running stack").set_defaults(fn=cmd_down)
    st = sub.add_parser("status", help="health and addresses of each component")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    run = sub.add_parser("run", help="run one platform process role")
    run.add_argument("role", choices=["gateway", "streams", "sink"])
    run.set_defaults(fn=cmd_run)
    conn = sub.add_parser("connector", help="protocol connectors")
    conn_sub = conn.add_subparsers(dest="connector_cmd", required=True)
    crun = conn_sub.add_parser("run", help="run one connector process")
    crun.add_argument("kind")
    crun.add_argument("--config", help="site configuration YAML")
    crun.set_defaults(fn=cmd_connector)

    adm = sub.add_parser("admin", help="platform administration")
    adm_sub = adm.add_subparsers(dest="admin_cmd", required=True)
    ct = adm_sub.add_parser("create-tenant", help="create a tenant and its first API client")
    ct.add_argument("name")
    ct.add_argument("--json", action="store_true")
    ct.set_defaults(fn=cmd_admin)
    cd = adm_sub.add_parser("create-device", help="register a device, authorise it on the broker, issue a certificate")
    cd.add_argument("tenant")
    cd.add_argument("device")
    cd.add_argument("--cert-dir")
    cd.add_argument("--json", action="store_true")
    cd.set_defaults(fn=cmd_admin)
    pt = adm_sub.add_parser("create-platform-token",
                            help="mint a platform-admin token (tenant management under /v1/admin)")
    pt.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    pt.set_defaults(fn=cmd_platform_token)
    cu = adm_sub.add_parser("create-user", help="add a console user to a tenant, e.g. its first owner")
    cu.add_argument("tenant", help="tenant name or id")
    cu.add_argument("email")
    cu.add_argument("--role", choices=["owner", "admin", "operator", "viewer"], default="owner")
    cu.add_argument("--name", default="")
    cu.add_argument("--password-stdin", action="store_true",
                    help="read the password from standard input (default: generate one and print it once)")
    cu.add_argument("--json", action="store_true")
    cu.set_defaults(fn=cmd_create_user)
    rk = adm_sub.add_parser("rotate-signing-key", help="add a new token signing key (old keys keep verifying)")
    rk.set_defaults(fn=cmd_rotate_signing_key)

    tp = sub.add_parser("topics", help="Kafka topic tools")
    tp_sub = tp.add_subparsers(dest="topics_cmd", required=True)
    tail = tp_sub.add_parser("tail", help="print decoded records of a topic")
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("-n", type=int, help="stop after N records")
    tail.add_argument("--timeout", type=float, help="stop after this many seconds")
    tail.set_defaults(fn=cmd_topics_tail)

    sch = sub.add_parser("schemas", help="Avro schemas and the Schema Registry")
    sch_sub = sch.add_subparsers(dest="schemas_cmd", required=True)
    sch_sub.add_parser("check", help="is every .avsc compatible with what the registry holds? (CI; registers "
                       "nothing)").set_defaults(fn=cmd_schemas_check)
    aa = sch_sub.add_parser("asyncapi", help="write the topic contract as AsyncAPI 3 (docs/asyncapi.yaml)")
    aa.add_argument("-o", "--output", default="docs/asyncapi.yaml", help="file to write, or - for stdout")
    aa.set_defaults(fn=cmd_schemas_asyncapi)

    sim = sub.add_parser("simulate", help="run a simulated fleet")
    sim.add_argument("--fleet", help="fleet.json (e.g. written by `up --with-fleet`); default: provision --devices")
    sim.add_argument("--devices", type=int, default=100, help="devices to provision (and reuse) without --fleet")
    sim.add_argument("--rate", type=float, help="messages/s for the whole fleet (default: devices / interval)")
    sim.add_argument("--interval", type=float, default=1.0, help="seconds between a device's readings")
    sim.add_argument("--protocol", default="mqtt", choices=["mqtt", "http", "coap"])
    sim.add_argument("--qos", type=int, default=1, choices=[0, 1])
    sim.add_argument("--payload", default="smart-meter", choices=sorted(PAYLOADS))
    sim.add_argument("--workers", type=int, help="generator processes (default: from devices and rate)")
    sim.add_argument("--duration", type=float)
    sim.set_defaults(fn=cmd_simulate)

    from fleetstream.bench.cli import add_arguments as add_bench_arguments

    add_bench_arguments(sub.add_parser("bench", help="end-to-end benchmark (own stack in a temp dir)"))
    sub.choices["bench"].set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = user_error(exc, _settings(args))
        if message is None:
            raise  # a bug: the traceback is what a report needs
        print(f"fleetstream: {message}", file=sys.stderr)
        return 2


def user_error(exc: BaseException, s: Settings) -> str | None:
    """One line saying what to do about ``exc`` when the user can fix it; None for anything else."""
    if isinstance(exc, UserError):
        return str(exc)
    from gateway.errors import ApiError  # the control plane's refusals (exists, invalid, broker down) say why

    if isinstance(exc, ApiError):
        return exc.message
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        return (f"cannot reach PostgreSQL at {s.host}:{s.postgres_port} ({str(exc).strip().splitlines()[-1]}); "
                "is the stack running? `fleetstream up --detach` starts it, `fleetstream status` shows it")
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return (f"cannot reach PostgreSQL at {s.host}:{s.postgres_port}; is the stack running? "
                "`fleetstream up --detach` starts it, `fleetstream status` shows it")
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return f"{exc.strerror}: {exc.filename}"
    return None


if __name__ == "__main__":
    sys.exit(main())

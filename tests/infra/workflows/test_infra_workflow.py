"""The infrastructure workflow cannot run here; these checks keep it honest."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.infra.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "infra.yml"


def _workflow() -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_infra_workflow_previews_with_policy_pack_on_pull_requests() -> None:
    wf = _workflow()
    preview = wf["jobs"]["preview"]

    assert "pull_request" in wf["on"]
    assert "pull_request" in preview["if"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert re.search(r"pulumi preview .*--policy-pack policy", _runs(preview).replace("\\\n", ""))


def test_infra_workflow_deploys_each_environment_from_main_in_order() -> None:
    wf = _workflow()
    jobs = wf["jobs"]

    assert wf["on"]["push"]["branches"] == ["main"]
    assert jobs["deploy-dev"]["environment"] == "dev"
    assert jobs["deploy-prod"]["environment"] == "prod"
    assert jobs["deploy-prod"]["needs"] == "deploy-dev"
    for name, stack in (("deploy-dev", "dev"), ("deploy-prod", "prod")):
        assert f"pulumi up --stack {stack} --policy-pack policy" in _runs(jobs[name])


def test_infra_workflow_authenticates_only_with_workload_identity_federation() -> None:
    wf = _workflow()
    text = WORKFLOW.read_text()

    assert wf["permissions"] == {"contents": "read"}
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
    # OIDC plus variables; the one secret is the state passphrase, not a credential.
    assert set(re.findall(r"secrets\.(\w+)", text)) == {"PULUMI_CONFIG_PASSPHRASE"}
    for name, job in wf["jobs"].items():
        auth = [
            s
            for s in job["steps"]
            if str(s.get("uses", "")).startswith("google-github-actions/auth")
        ]
        if name == "offline":
            assert auth == [] and "permissions" not in job
            continue
        assert job["permissions"]["id-token"] == "write"
        (step,) = auth
        assert set(step["with"]) == {"workload_identity_provider", "service_account"}


def test_infra_workflow_commands_exist_in_this_repository() -> None:
    text = WORKFLOW.read_text()

    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()
    assert (ROOT / "stacks" / "plan.py").is_file()
    assert (
        "python -m app.pipeline.compile" not in text
        or (ROOT / "app" / "pipeline" / "compile.py").is_file()
    )
    assert "make env" in text and "env:" in (ROOT / "Makefile").read_text()
    assert "pytest tests/infra" in text


def _pulumi_jobs(wf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: job
        for name, job in wf["jobs"].items()
        if re.search(r"pulumi (preview|up) ", _runs(job))
    }


def test_infra_workflow_pulumi_steps_get_passphrase_from_secret() -> None:
    jobs = _pulumi_jobs(_workflow())

    assert sorted(jobs) == ["deploy-dev", "deploy-prod", "preview"]
    for job in jobs.values():
        (step,) = [s for s in job["steps"] if re.search(r"pulumi (preview|up) ", s.get("run", ""))]
        assert step["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_infra_workflow_pulumi_jobs_put_uv_on_path_for_uv_toolchain() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    jobs = _pulumi_jobs(_workflow())

    assert project["runtime"]["options"]["toolchain"] == "uv"
    for job in jobs.values():
        runs = _runs(job)
        assert runs.index("make env") < runs.index('echo "$PWD/.tools/bin" >> "$GITHUB_PATH"')


def test_infra_workflow_pulumi_jobs_have_no_manual_compile_step() -> None:
    # The program compiles the pipeline it uploads: a compile step here would be a
    # second, possibly different, source of the template.
    for name, job in _pulumi_jobs(_workflow()).items():
        assert "app.pipeline.compile" not in _runs(job), name
        assert "make compile" not in _runs(job), name

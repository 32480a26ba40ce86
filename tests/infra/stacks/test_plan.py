from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.permissions import PermissionGroup
from stacks import iam_matrix
from stacks.plan import main
from tests.infra.conftest import ROOT, SERVING_REF, TRAINER_REF, make_source_tree


def test_plan_dev_writes_resources_and_iam_matrix_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"

    code = main(["--stack", "dev", "--json", str(out)])

    assert code == 0
    plan = json.loads(out.read_text())
    assert plan["stack"] == "dev" and plan["problems"] == []
    assert plan["resource_count"] == sum(c["resources"] for c in plan["components"].values())
    custom = [r for r in plan["resources"] if r["custom"]]
    assert len(custom) == plan["resource_count"]
    assert all(r["type"] and r["name"] and r["parent"] for r in custom)
    dataset = next(r for r in custom if r["type"] == "gcp:bigquery/dataset:Dataset")
    assert dataset["parent"] == "warehouse" and dataset["inputs"]["datasetId"]
    assert plan["iam"] and all({"member", "role", "resource"} <= set(b) for b in plan["iam"])
    assert not [b for b in plan["iam"] if b["role"] in iam_matrix.BASIC_ROLES]
    assert not [b for b in plan["iam"] if b["member"] in iam_matrix.PUBLIC_MEMBERS]
    printed = capsys.readouterr().out
    assert "IAM matrix" in printed and "warehouse" in printed


def test_plan_masks_secret_inputs(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    main(["--stack", "dev", "--json", str(out)])

    plan = json.loads(out.read_text())
    config_obj = next(
        r
        for r in plan["resources"]
        if r["inputs"].get("name") == "data/fraud-mlops/runtime-config.json"
    )
    assert config_obj["inputs"]["content"] == "[secret]"


def test_plan_undeclared_binding_exits_nonzero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dropped = next(g for g in iam_matrix.TABLE if g.member == "sa:sync")
    monkeypatch.setattr(iam_matrix, "TABLE", tuple(g for g in iam_matrix.TABLE if g is not dropped))

    code = main(["--stack", "dev"])

    assert code == 1
    assert "undeclared binding" in capsys.readouterr().out


def test_plan_binding_condition_differs_from_declared_exits_nonzero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same member, role and resource under another condition is another binding.
    staged = next(g for g in iam_matrix.TABLE if g.condition)
    widened = dataclasses.replace(staged, condition="")
    monkeypatch.setattr(
        iam_matrix, "TABLE", tuple(widened if g is staged else g for g in iam_matrix.TABLE)
    )

    code = main(["--stack", "dev"])

    assert code == 1
    out = capsys.readouterr().out
    assert "undeclared binding: serviceAccount:fmo-dev-build@" in out
    assert 'if resource.name.startsWith("projects/_/buckets/gcf-v2-sources-' in out


def test_plan_custom_role_permission_drift_exits_nonzero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the declared side narrows: the program still creates the role from the spec.
    launcher = iam_matrix.CUSTOM_ROLES["custom:pipeline-launcher"]
    narrowed = dataclasses.replace(
        launcher,
        groups=(
            PermissionGroup(
                "narrowed for the test",
                tuple(sorted(launcher.permissions - {"aiplatform.pipelineJobs.cancel"})),
            ),
        ),
    )
    monkeypatch.setitem(iam_matrix.CUSTOM_ROLES, "custom:pipeline-launcher", narrowed)

    code = main(["--stack", "dev"])

    assert code == 1
    out = capsys.readouterr().out
    assert "fraud_mlops_dev_pipeline_launcher permissions differ from declared" in out
    assert "extra ['aiplatform.pipelineJobs.cancel']" in out


def test_plan_unknown_stack_exits_with_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "staging"]) == 2
    assert "Pulumi.staging.yaml" in capsys.readouterr().err


def test_plan_invalid_stack_config_names_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.bad.yaml").write_text(
        "config:\n  fraud-mlops:project: fraud-mlops-dev\n  fraud-mlops:environment: dev\n"
        "  fraud-mlops:featureStore.maxNodes: 0\n"
    )

    assert main(["--stack", "bad", "--project-root", str(tmp_path)]) == 2
    assert "fraud-mlops:featureStore.maxNodes" in capsys.readouterr().err


def test_plan_module_runs_offline_as_a_command(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "PULUMI_"))}

    done = subprocess.run(
        [sys.executable, "-m", "stacks.plan", "--stack", "prod", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["environment"] == "prod"


def test_plan_same_tree_twice_gives_identical_json(tmp_path: Path) -> None:
    # A frozen copy of the project: the real app tree may change between runs.
    root = make_source_tree(tmp_path / "repo")
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        (root / name).write_text((ROOT / name).read_text())
    # The stand-in tree has no image sources: the images are prebuilt (CI's path).
    with (root / "Pulumi.dev.yaml").open("a") as stack_file:
        stack_file.write(
            f"  fraud-mlops:images.trainer: {TRAINER_REF}\n"
            f"  fraud-mlops:images.serving: {SERVING_REF}\n"
        )
    first, second = tmp_path / "a.json", tmp_path / "b.json"

    main(["--stack", "dev", "--json", str(first), "--project-root", str(root)])
    main(["--stack", "dev", "--json", str(second), "--project-root", str(root)])

    assert first.read_text() == second.read_text()

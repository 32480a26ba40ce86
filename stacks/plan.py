"""``fraud-mlops plan``: the stack's resources and IAM matrix, offline.

Runs the same program as ``pulumi up`` (:func:`stacks.program.main`) with the
config of ``Pulumi.<stack>.yaml`` under Pulumi's mock engine, in-process: no
CLI, no credentials, no network. Prints resources per component and every IAM
binding, and with ``--json PATH`` writes both for review.

Exit status: 0 when every binding is declared in :mod:`stacks.iam_matrix`,
every custom role holds exactly its declared permissions, and no binding is a
basic role or a public principal the config did not ask for; 1 otherwise; 2 for
a config error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stacks.config import NAMESPACE, StackConfig, StackConfigError, load
from stacks.iam_matrix import (
    BASIC_ROLES,
    PUBLIC_MEMBERS,
    Binding,
    expected_bindings,
    expected_custom_roles,
)
from stacks.inventory import bindings, components, custom_roles, key_inputs
from stacks.mocks import PROJECT_NUMBER, MockRun, run_with_mocks


def _as_config_string(value: Any) -> str:
    # Pulumi hands every config value to the program as a string.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _qualified(key: str) -> str:
    return key if ":" in key else f"{NAMESPACE}:{key}"


def stack_config(root: Path, stack: str) -> dict[str, str]:
    """Project defaults from ``Pulumi.yaml`` overlaid by ``Pulumi.<stack>.yaml``,
    as the Pulumi CLI would hand them to the program."""
    project_file = root / "Pulumi.yaml"
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        raise StackConfigError(f"no stack file {stack_file}")
    project = yaml.safe_load(project_file.read_text()) or {}
    values: dict[str, str] = {}
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, Mapping) and "default" in spec:
            values[_qualified(key)] = _as_config_string(spec["default"])
        elif isinstance(spec, Mapping) and "value" in spec:
            values[_qualified(key)] = _as_config_string(spec["value"])
    for key, value in ((yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}).items():
        if isinstance(value, Mapping) and "secure" in value:
            continue  # encrypted: the plan cannot read it and the program reads none
        values[_qualified(key)] = _as_config_string(value)
    return values


def parse(values: Mapping[str, str]) -> StackConfig:
    prefix = f"{NAMESPACE}:"
    return load(lambda key: values.get(prefix + key))


def run_plan(root: Path, stack: str) -> dict[str, Any]:
    """Run the program for ``stack`` under mocks; return the plan as plain data."""
    from stacks import program

    values = stack_config(root, stack)
    cfg = parse(values)  # fail here, naming the key, before the engine starts
    notes: list[str] = []
    # The program compiles the pipeline it uploads, here as under `pulumi up`.
    run = run_with_mocks(lambda: program.main(root), project=NAMESPACE, stack=stack, config=values)
    return report(cfg, stack, run, notes)


def _described(b: Binding) -> str:
    # With its condition: the same grant unconditioned is a different, wider binding.
    where = f" if {b.condition}" if b.condition else ""
    return f"{b.member} {b.role} on {b.resource}{where}"


def report(cfg: StackConfig, stack: str, run: MockRun, notes: list[str]) -> dict[str, Any]:
    expected = expected_bindings(cfg, PROJECT_NUMBER)
    actual = bindings(run.registrations)
    roles_expected = expected_custom_roles(cfg)
    roles_actual = custom_roles(run.registrations)
    actual_set = {b for b, _ in actual}
    iam = []
    for binding, reg in sorted(actual, key=lambda br: br[0]):
        grant = expected.get(binding)
        iam.append(
            {
                "member": binding.member,
                "role": binding.role,
                "resource": binding.resource,
                "condition": binding.condition or None,
                "declared": grant is not None,
                "reason": grant.reason if grant else None,
                "type": reg.type,
                "name": reg.name,
            }
        )
    problems = [
        *(f"basic role: {_described(b)}" for b in actual_set if b.role in BASIC_ROLES),
        *(
            f"public principal: {_described(b)}"
            for b in actual_set
            if b.member in PUBLIC_MEMBERS and not cfg.function.public
        ),
        *(f"undeclared binding: {_described(b)}" for b in actual_set if b not in expected),
        *(f"declared but not created: {_described(b)}" for b in expected if b not in actual_set),
        *(f"undeclared custom role: {name}" for name in roles_actual if name not in roles_expected),
        *(
            f"custom role declared but not created: {name}"
            for name in roles_expected
            if name not in roles_actual
        ),
        *(
            f"custom role {name} permissions differ from declared: "
            f"extra {sorted(roles_actual[name] - perms)}, "
            f"missing {sorted(perms - roles_actual[name])}"
            for name, perms in roles_expected.items()
            if name in roles_actual and roles_actual[name] != perms
        ),
    ]
    resources = [
        {
            "type": r.type,
            "name": r.name,
            "parent": r.parent_name or None,
            "parent_type": r.parent_type or None,
            "custom": r.custom,
            "protect": r.protect,
            "inputs": key_inputs(r) if r.custom else {},
        }
        for r in sorted(run.registrations, key=lambda r: (r.parent_name, r.type, r.name))
    ]
    return {
        "stack": stack,
        "project": cfg.project,
        "environment": cfg.environment,
        "notes": notes,
        "components": components(run.registrations),
        "resource_count": sum(1 for r in run.registrations if r.custom),
        "resources": resources,
        "iam": iam,
        "custom_roles": {name: sorted(perms) for name, perms in sorted(roles_actual.items())},
        "problems": sorted(problems),
        "outputs": run.outputs,
    }


def render(plan: dict[str, Any]) -> str:
    lines = [f"Stack {plan['stack']} (project {plan['project']}), offline plan under mocks"]
    lines += [f"note: {n}" for n in plan["notes"]]
    lines.append("")
    # As wide as the longest component name, so the counts stay in one column.
    w = max([16, *(len(name) for name in plan["components"])])
    lines.append(f"{'component':<{w}} {'type':<40} {'resources':>9}")
    for name, entry in plan["components"].items():
        lines.append(f"{name:<{w}} {entry['type']:<40} {entry['resources']:>9}")
    lines.append(f"{'total':<{w}} {'':<40} {plan['resource_count']:>9}")
    lines.append("")
    lines.append(f"IAM matrix ({len(plan['iam'])} bindings)")
    for b in plan["iam"]:
        mark = "" if b["declared"] else "  <-- NOT DECLARED"
        where = f"\n      if {b['condition']}" if b.get("condition") else ""
        lines.append(f"  {b['member']}\n    {b['role']}  on  {b['resource']}{where}{mark}")
    lines.append("")
    lines.append(f"Custom roles ({len(plan['custom_roles'])})")
    for name, perms in plan["custom_roles"].items():
        lines.append(f"  {name}: {', '.join(perms)}")
    lines.append("")
    if plan["problems"]:
        lines.append("PROBLEMS:")
        lines += [f"  {p}" for p in plan["problems"]]
    else:
        lines.append("No basic roles, no public principals, every binding declared.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraud-mlops plan",
        description="Offline plan of the Pulumi stack: resources by component and IAM matrix.",
    )
    parser.add_argument("--stack", default="dev", help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the plan as JSON")
    parser.add_argument(
        "--project-root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="directory holding Pulumi.yaml (default: this repository)",
    )
    args = parser.parse_args(argv)
    root = args.project_root.resolve()
    try:
        plan = run_plan(root, args.stack)
    except (StackConfigError, ValueError) as exc:
        print(f"plan failed: {exc}", file=sys.stderr)
        return 2
    print(render(plan))
    if args.json:
        args.json.write_text(json.dumps(plan, indent=2, sort_keys=False, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if plan["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

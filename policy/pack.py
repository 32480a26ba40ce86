"""The rules of :mod:`policy.rules` as a pulumi-policy pack."""

from __future__ import annotations

from collections.abc import Callable

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules

PACK_NAME = "fraud-mlops-guardrails"


def as_resource(args: ResourceValidationArgs) -> rules.Resource:
    return rules.Resource(
        type=args.resource_type,
        props=args.props,
        stack=rules.stack_of(args.urn),
        name=args.name,
        protect=bool(args.opts.protect) if args.opts is not None else False,
    )


def _validator(
    rule: Callable[[rules.Resource], list[str]],
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(as_resource(args)):
            report_violation(message, None)

    return validate


def _public(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    allow = bool(args.get_config().get("allowPublicFunction", False))
    for message in rules.no_public_principals(as_resource(args), allow_public_function=allow):
        report_violation(message, None)


def _cmek(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    required = str(args.get_config().get("kmsKeyName", ""))
    resources = [
        rules.Resource(
            type=r.resource_type, props=r.props, stack=rules.stack_of(r.urn), name=r.name
        )
        for r in args.resources
    ]
    for message in rules.cmek_where_configured(resources, required):
        report_violation(message, None)


def policies() -> list[Policy]:
    return [
        ResourceValidationPolicy(
            name="no-basic-roles",
            description="No owner, editor or viewer grants: predefined roles, narrowest scope.",
            validate=_validator(rules.no_basic_roles),
        ),
        ResourceValidationPolicy(
            name="no-public-principals",
            description="No allUsers or allAuthenticatedUsers, except a public function "
            "explicitly allowed outside prod.",
            validate=_public,
            config_schema=PolicyConfigSchema(
                properties={"allowPublicFunction": {"type": "boolean", "default": False}}
            ),
        ),
        ResourceValidationPolicy(
            name="no-public-buckets",
            description="Buckets enforce public access prevention and uniform access.",
            validate=_validator(rules.no_public_buckets),
        ),
        ResourceValidationPolicy(
            name="deletion-protection-in-prod",
            description="Stateful resources in prod are protected and never force-destroyed.",
            validate=_validator(rules.deletion_protection_in_prod),
        ),
        StackValidationPolicy(
            name="cmek-where-configured",
            description="When a customer-managed key is used, every resource that accepts "
            "one uses that key.",
            validate=_cmek,
            config_schema=PolicyConfigSchema(properties={"kmsKeyName": {"type": "string"}}),
        ),
    ]


def build_pack() -> PolicyPack:
    return PolicyPack(
        name=PACK_NAME,
        enforcement_level=EnforcementLevel.MANDATORY,
        policies=policies(),
    )

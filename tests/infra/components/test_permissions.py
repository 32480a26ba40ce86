"""The custom roles' permissions, written once in components.permissions.

The digests below are the one deliberate check on their content: a permission
added or removed changes a digest, so the change is made here too, on purpose,
in the same review. Everything else (the component, the IAM table, the program
under mocks, the plan) is compared with components.permissions itself.
"""

from __future__ import annotations

import hashlib

import pytest

from components.permissions import CUSTOM_ROLES, CustomRoleSpec

# sha256 of the role's permissions, sorted, joined by newlines. On a deliberate
# change, take the new digest from the failure message.
PINNED_DIGESTS = {
    "endpoint_predictor": "7dc279e3e6fd52a62c1ff433777a0615997562c9262536d653e09a6788584f19",
    "endpoint_deployer": "d4f56528b3267f9bb3f3180618a9b942b20b8db704662fa76bde7dc671931186",
    "training_pipeline": "b6e8ea837ef3ae04e3070e7b0a8aa0653a24491f7a7897f78cd2ae8d5ae6f33f",
    "pipeline_launcher": "874e6307212cc23c335b33227ced861a47f72a13f66224a0f6bb5ce358e7882d",
    "feature_view_syncer": "ff7ea9ecbddffdea96b91702ec083e2d5fed36777d7101cff0804f7d365c28c2",
}


def _digest(role: CustomRoleSpec) -> str:
    return hashlib.sha256("\n".join(sorted(role.permissions)).encode()).hexdigest()


def test_custom_roles_each_kind_pinned_once() -> None:
    assert sorted(r.kind for r in CUSTOM_ROLES) == sorted(PINNED_DIGESTS)


@pytest.mark.parametrize("role", CUSTOM_ROLES, ids=lambda r: r.kind)
def test_custom_role_permissions_changed_fail_until_digest_updated(role: CustomRoleSpec) -> None:
    assert _digest(role) == PINNED_DIGESTS[role.kind], (
        f"{role.kind} now holds {sorted(role.permissions)}; if that is intended, "
        f"pin {_digest(role)}"
    )


@pytest.mark.parametrize("role", CUSTOM_ROLES, ids=lambda r: r.kind)
def test_custom_role_never_deletes_exports_or_touches_iam(role: CustomRoleSpec) -> None:
    assert all(p.startswith("aiplatform.") for p in role.permissions)
    verbs = {p.rsplit(".", 1)[1] for p in role.permissions}
    assert not verbs & {"delete", "export", "setIamPolicy", "getIamPolicy"}


@pytest.mark.parametrize("role", CUSTOM_ROLES, ids=lambda r: r.kind)
def test_custom_role_each_permission_in_one_group_with_a_reason(role: CustomRoleSpec) -> None:
    listed = [p for g in role.groups for p in g.permissions]

    assert len(listed) == len(set(listed)) == len(role.permissions)
    assert all(g.reason and g.permissions for g in role.groups)
    assert role.title and role.description


def test_custom_roles_symbols_kinds_and_names_are_distinct_and_consistent() -> None:
    for attr in ("symbol", "kind", "name"):
        values = [getattr(r, attr) for r in CUSTOM_ROLES]
        assert len(values) == len(set(values)), attr
    for role in CUSTOM_ROLES:
        assert role.symbol == f"custom:{role.kind.replace('_', '-')}"
        assert role.name == role.kind.replace("_", "-")

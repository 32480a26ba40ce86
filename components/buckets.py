"""One way to make a bucket here: private, uniform access, versioned, CMEK if asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_gcp as gcp


def private_bucket(
    resource_name: str,
    *,
    project: str,
    name: str,
    location: str,
    labels: Mapping[str, str],
    kms_key_name: str | None,
    deletion_protection: bool,
    opts: pulumi.ResourceOptions,
    versioning: bool = True,
    depends_on: Sequence[pulumi.Resource] = (),
) -> gcp.storage.Bucket:
    return gcp.storage.Bucket(
        resource_name,
        project=project,
        name=name,
        location=location.upper(),
        labels=dict(labels),
        # IAM only, no object ACLs, and never public whatever a binding says.
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning=gcp.storage.BucketVersioningArgs(enabled=versioning),
        encryption=(
            gcp.storage.BucketEncryptionArgs(default_kms_key_name=kms_key_name)
            if kms_key_name
            else None
        ),
        force_destroy=not deletion_protection,
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(protect=deletion_protection, depends_on=list(depends_on))
        ),
    )

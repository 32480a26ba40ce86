from __future__ import annotations

import json

import pytest

from app.core.schema import FEATURE_VIEW_SCHEMA, RAW_SCHEMA, TRAINING_SCHEMA
from components.warehouse_datasets import WarehouseDatasets, WarehouseDatasetsArgs
from tests.infra.conftest import assert_component_shape, run_component

DATASET = "gcp:bigquery/dataset:Dataset"
TABLE = "gcp:bigquery/table:Table"
KEY = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"


def _args(**overrides: object) -> WarehouseDatasetsArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        location="us-central1",
        dataset_prefix="fraud_mlops_test",
        snapshot_expiration_days=30,
        deletion_protection=False,
        labels={"app": "fraud-mlops"},
    )
    base.update(overrides)
    return WarehouseDatasetsArgs(**base)  # type: ignore[arg-type]


def test_warehouse_datasets_default_args_create_six_datasets_three_tables() -> None:
    run = run_component(lambda: WarehouseDatasets("warehouse", _args()))

    assert_component_shape(run, "warehouse", "fraud-mlops:gcp:WarehouseDatasets")
    datasets = {r.inputs["datasetId"] for r in run.of_type(DATASET)}
    assert datasets == {
        "fraud_mlops_test_raw",
        "fraud_mlops_test_training",
        "fraud_mlops_test_snapshot",
        "fraud_mlops_test_lineage",
        "fraud_mlops_test_features",
        "fraud_mlops_test_predictions",
    }
    tables = {(r.inputs["datasetId"], r.inputs["tableId"]) for r in run.of_type(TABLE)}
    assert tables == {
        ("fraud_mlops_test_raw", "transactions"),
        ("fraud_mlops_test_training", "transactions"),
        ("fraud_mlops_test_features", "card_features"),
    }


def test_warehouse_datasets_tables_take_schemas_from_app_schema() -> None:
    run = run_component(lambda: WarehouseDatasets("warehouse", _args()))

    by_table = {
        (r.inputs["datasetId"].rsplit("_", 1)[-1], r.inputs["tableId"]): json.loads(
            r.inputs["schema"]
        )
        for r in run.of_type(TABLE)
    }
    assert by_table["raw", "transactions"] == [c.bigquery_field() for c in RAW_SCHEMA]
    assert by_table["training", "transactions"] == [c.bigquery_field() for c in TRAINING_SCHEMA]
    assert by_table["features", "card_features"] == [
        c.bigquery_field() for c in FEATURE_VIEW_SCHEMA
    ]


def test_warehouse_datasets_snapshot_dataset_expires_tables_after_configured_days() -> None:
    run = run_component(lambda: WarehouseDatasets("warehouse", _args(snapshot_expiration_days=7)))

    expiring = {
        r.inputs["datasetId"]: r.inputs.get("defaultTableExpirationMs")
        for r in run.of_type(DATASET)
    }
    assert expiring.pop("fraud_mlops_test_snapshot") == 7 * 24 * 3600 * 1000
    assert set(expiring.values()) == {None}


def test_warehouse_datasets_deletion_protection_protects_datasets_and_tables() -> None:
    run = run_component(lambda: WarehouseDatasets("warehouse", _args(deletion_protection=True)))

    for r in run.of_type(DATASET) + run.of_type(TABLE):
        assert r.protect, r.name
    assert all(r.inputs["deletionProtection"] is True for r in run.of_type(TABLE))
    assert all(r.inputs["deleteContentsOnDestroy"] is False for r in run.of_type(DATASET))


def test_warehouse_datasets_without_protection_leaves_resources_deletable() -> None:
    run = run_component(lambda: WarehouseDatasets("warehouse", _args(deletion_protection=False)))

    assert not any(r.protect for r in run.registrations if r.custom)
    assert all(r.inputs["deletionProtection"] is False for r in run.of_type(TABLE))
    assert all(r.inputs["deleteContentsOnDestroy"] is True for r in run.of_type(DATASET))


def test_warehouse_datasets_kms_key_encrypts_every_dataset_and_table() -> None:
    run = run_component(lambda: WarehouseDatasets("warehouse", _args(kms_key_name=KEY)))

    for r in run.of_type(DATASET):
        assert r.inputs["defaultEncryptionConfiguration"] == {"kmsKeyName": KEY}
    for r in run.of_type(TABLE):
        assert r.inputs["encryptionConfiguration"] == {"kmsKeyName": KEY}


def test_warehouse_datasets_labels_reach_every_dataset() -> None:
    run = run_component(lambda: WarehouseDatasets("warehouse", _args(labels={"team": "risk"})))

    assert all(r.inputs["labels"] == {"team": "risk"} for r in run.of_type(DATASET))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"dataset_prefix": "Bad-Prefix"}, "dataset_prefix"),
        ({"snapshot_expiration_days": 0}, "snapshot_expiration_days"),
    ],
)
def test_warehouse_datasets_args_invalid_value_raises_naming_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"WarehouseDatasetsArgs.{field}"):
        _args(**overrides).validate()

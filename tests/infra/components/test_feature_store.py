from __future__ import annotations

import pytest

from components.feature_store import FeatureStore, FeatureStoreArgs
from tests.infra.conftest import assert_component_shape, run_component

STORE = "gcp:vertex/aiFeatureOnlineStore:AiFeatureOnlineStore"
VIEW = "gcp:vertex/aiFeatureOnlineStoreFeatureview:AiFeatureOnlineStoreFeatureview"


def _args(**overrides: object) -> FeatureStoreArgs:
    base: dict[str, object] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        store_id="fraud_mlops_test",
        view_id="card_features",
        source_table_uri="bq://fraud-mlops-test.fraud_mlops_test_training.card_features",
        entity_id_column="card_id",
        min_nodes=2,
        max_nodes=7,
        cpu_target=45,
        sync_cron="*/15 * * * *",
        deletion_protection=False,
    )
    base.update(overrides)
    return FeatureStoreArgs(**base)  # type: ignore[arg-type]


def test_feature_store_bigtable_autoscaling_comes_from_args() -> None:
    run = run_component(lambda: FeatureStore("feature-store", _args()))

    assert_component_shape(run, "feature-store", "fraud-mlops:gcp:FeatureStore")
    (store,) = run.of_type(STORE)
    assert store.inputs["bigtable"] == {
        "autoScaling": {"minNodeCount": 2, "maxNodeCount": 7, "cpuUtilizationTarget": 45}
    }
    assert "optimized" not in store.inputs  # deprecated serving type


def test_feature_store_view_reads_bigquery_keyed_by_card_with_schedule() -> None:
    run = run_component(lambda: FeatureStore("feature-store", _args()))

    (view,) = run.of_type(VIEW)
    assert view.inputs["featureOnlineStore"] == "fraud_mlops_test"
    assert view.inputs["bigQuerySource"] == {
        "uri": "bq://fraud-mlops-test.fraud_mlops_test_training.card_features",
        "entityIdColumns": ["card_id"],
    }
    assert view.inputs["syncConfig"] == {"cron": "TZ=UTC */15 * * * *"}


def test_feature_store_deletion_protection_protects_store() -> None:
    run = run_component(lambda: FeatureStore("feature-store", _args(deletion_protection=True)))

    (store,) = run.of_type(STORE)
    assert store.protect and store.inputs["forceDestroy"] is False


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"min_nodes": 0}, "min_nodes"),
        ({"min_nodes": 5, "max_nodes": 4}, "max_nodes"),
        ({"min_nodes": 1, "max_nodes": 11}, "max_nodes"),  # Bigtable: at most 10x min
        ({"min_nodes": 3, "max_nodes": 31}, "max_nodes"),
        ({"cpu_target": 95}, "cpu_target"),
        ({"store_id": "has-hyphen"}, "store_id"),
        ({"entity_id_column": ""}, "entity_id_column"),
    ],
)
def test_feature_store_args_invalid_value_raises_naming_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"FeatureStoreArgs.{field}"):
        _args(**overrides).validate()


def test_feature_store_args_max_nodes_ten_times_min_nodes_validates() -> None:
    _args(min_nodes=3, max_nodes=30).validate()


@pytest.mark.parametrize("protect", [True, False])
def test_feature_store_view_protect_follows_deletion_protection(protect: bool) -> None:
    run = run_component(lambda: FeatureStore("feature-store", _args(deletion_protection=protect)))

    (view,) = run.of_type(VIEW)
    assert view.protect is protect

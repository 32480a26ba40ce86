from __future__ import annotations

import pytest

from stacks.config import StackConfig, StackConfigError, config_keys, load

BASE = {"project": "fraud-mlops-dev", "environment": "dev"}


def _load(**values: str) -> StackConfig:
    merged = {**BASE, **values}
    return load(merged.get)


def test_load_minimal_values_fills_defaults() -> None:
    cfg = _load()

    assert cfg.region == "us-central1"
    assert cfg.deletion_protection is True
    assert cfg.feature_store.max_nodes == 3
    assert cfg.function.invokers == ()
    assert cfg.kms_key is None


def test_load_string_values_are_typed() -> None:
    cfg = _load(
        **{
            "featureStore.maxNodes": "8",
            "composer.privateIp": "true",
            "endpoint.requestLoggingSamplingRate": "0.5",
            "function.invokers": '["user:a@example.com"]',
        }
    )

    assert cfg.feature_store.max_nodes == 8
    assert cfg.composer.private_ip is True
    assert cfg.endpoint.request_logging_sampling_rate == 0.5
    assert cfg.function.invokers == ("user:a@example.com",)


def test_load_object_form_from_config_set_path_is_accepted() -> None:
    cfg = _load(featureStore='{"minNodes": 2, "maxNodes": 9}')

    assert (cfg.feature_store.min_nodes, cfg.feature_store.max_nodes) == (2, 9)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"featureStore.maxNodes": "0"}, "fraud-mlops:featureStore.maxNodes"),
        ({"featureStore.maxNodes": "lots"}, "fraud-mlops:featureStore.maxNodes"),
        (
            {"featureStore.minNodes": "4", "featureStore.maxNodes": "2"},
            "fraud-mlops:featureStore.maxNodes",
        ),
        # Bigtable autoscaling rejects a maximum above 10x the minimum.
        (
            {"featureStore.minNodes": "1", "featureStore.maxNodes": "11"},
            "fraud-mlops:featureStore.maxNodes: maxNodes must be at most 10 x minNodes",
        ),
        ({"function.invokers": '["alice"]'}, "fraud-mlops:function.invokers"),
        ({"function.invokers": "[not json"}, "fraud-mlops:function.invokers"),
        (
            {"composer.imageVersion": "composer-2.9.0-airflow-2.9.3"},
            "fraud-mlops:composer.imageVersion",
        ),
        ({"cmek.kmsKeyName": "my-key"}, "fraud-mlops:cmek.kmsKeyName"),
        (
            {"cmek.kmsKeyName": "projects/p/locations/us/keyRings/r/cryptoKeys/k"},
            "fraud-mlops:cmek.kmsKeyName",
        ),
        ({"endpoint.canaryTrafficPercent": "120"}, "fraud-mlops:endpoint.canaryTrafficPercent"),
        ({"environment": "prod", "deletionProtection": "false"}, "fraud-mlops:deletionProtection"),
    ],
)
def test_load_invalid_value_error_names_the_key(values: dict[str, str], key: str) -> None:
    with pytest.raises(StackConfigError, match=key.replace(".", r"\.")):
        _load(**values)


def test_load_max_nodes_ten_times_min_nodes_is_accepted() -> None:
    cfg = _load(**{"featureStore.minNodes": "2", "featureStore.maxNodes": "20"})

    assert (cfg.feature_store.min_nodes, cfg.feature_store.max_nodes) == (2, 20)


def test_load_missing_required_key_names_it() -> None:
    with pytest.raises(StackConfigError, match="fraud-mlops:project: Field required"):
        load({"environment": "dev"}.get)


def test_config_keys_are_flat_dotted_and_unique() -> None:
    keys = [k for k, _ in config_keys()]

    assert len(keys) == len(set(keys))
    assert "featureStore.maxNodes" in keys and "project" in keys
    assert all(k.count(".") <= 1 for k in keys)

"""The training pipeline's graph: which step feeds which, and the gate's two branches."""

# No ``from __future__ import annotations``: KFP reads the return annotation object.
from typing import NamedTuple

from kfp import dsl

from app.pipeline.steps.build_dataset import build_dataset
from app.pipeline.steps.deploy_model import deploy_model
from app.pipeline.steps.evaluate_model import evaluate_model
from app.pipeline.steps.gate import gate
from app.pipeline.steps.keep_deployed_model import keep_deployed_model
from app.pipeline.steps.register_model import register_model
from app.pipeline.steps.train_model import train_model

PIPELINE_NAME = "fraud-training"


class TrainingOutputs(NamedTuple):
    # "" when the gate rejected the candidate and nothing was deployed.
    deployed_version: str
    gate_passed: bool
    gate_reason: str
    metrics_json: str


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Train, evaluate and gate a fraud model on one immutable training snapshot.",
)
def fraud_training_pipeline(config_json: str, snapshot_id: str, run_name: str) -> TrainingOutputs:
    dataset = build_dataset(config_json=config_json, snapshot_id=snapshot_id)
    trained = train_model(
        config_json=config_json,
        train=dataset.outputs["train"],
        validation=dataset.outputs["validation"],
    )
    evaluated = evaluate_model(model=trained.outputs["model"], holdout=dataset.outputs["holdout"])
    decision = gate(
        config_json=config_json,
        auprc=evaluated.outputs["auprc"],
        roc_auc=evaluated.outputs["roc_auc"],
        holdout=dataset.outputs["holdout"],
    )
    # The gate, register and deploy read or change registry state: a cached result is wrong.
    decision.set_caching_options(enable_caching=False)

    # KFP builds the branch condition from an explicit comparison, hence "== True".
    with dsl.If(decision.outputs["passed"] == True, name="gate-passed"):  # noqa: E712
        registered = register_model(
            config_json=config_json,
            model=trained.outputs["model"],
            snapshot_id=snapshot_id,
            run_name=run_name,
            metrics_json=evaluated.outputs["metrics_json"],
        )
        registered.set_caching_options(enable_caching=False)
        # A compare-and-swap against the champion the gate judged: if another run changed
        # it meanwhile, this deploy fails instead of both runs promoting.
        deployed = deploy_model(
            config_json=config_json,
            version=registered.output,
            expected_champion=decision.outputs["champion"],
        )
        deployed.set_caching_options(enable_caching=False)
    with dsl.Else(name="gate-rejected"):
        kept = keep_deployed_model(reason=decision.outputs["reason"])

    return TrainingOutputs(
        deployed_version=dsl.OneOf(deployed.output, kept.output),
        gate_passed=decision.outputs["passed"],
        gate_reason=decision.outputs["reason"],
        metrics_json=evaluated.outputs["metrics_json"],
    )

"""The pipeline's steps: thin lightweight components, one concern each.

KFP ships each function's source to the step's container and runs it there, so
every import sits inside the body and the work is done by ``app.core``, which is
installed in the trainer image (and, locally, in the venv the steps run in).
"""

# No ``from __future__ import annotations``: KFP reads the real annotation objects. The
# NamedTuple return types are spelled inline (KFP's documented form, which mypy does not
# accept) because each step's source runs on its own, without this module's names.
from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import (
    HTML,
    ClassificationMetrics,
    Dataset,
    Input,
    Metrics,
    Model,
    Output,
)

# The image built from this repository for Vertex AI (project installed, no pip at run
# time); Pulumi pushes it and the compiled spec names it. kfp.local ignores it.
TRAINER_IMAGE = "fraud-mlops-trainer:latest"


def trainer_component(func: Callable[..., Any]) -> Any:
    return dsl.component(func, base_image=TRAINER_IMAGE, install_kfp_package=False)


@trainer_component
def build_dataset(
    config_json: str,
    snapshot_id: str,
    train: Output[Dataset],
    validation: Output[Dataset],
    holdout: Output[Dataset],
) -> None:
    """Read the immutable snapshot and split it by time into three parquet files."""
    from app.core.backends import warehouse
    from app.core.config import RuntimeConfig
    from app.core.model.split import time_split

    cfg = RuntimeConfig.from_json(config_json)
    frame = warehouse(cfg).read_snapshot(snapshot_id)
    splits = time_split(
        frame,
        holdout_fraction=cfg.training.holdout_fraction,
        validation_fraction=cfg.training.validation_fraction,
    )
    for artifact, part in (
        (train, splits.train),
        (validation, splits.validation),
        (holdout, splits.holdout),
    ):
        part.to_parquet(artifact.path, index=False)
        artifact.metadata.update(
            {"snapshot_id": snapshot_id, "rows": len(part), "frauds": int(part["label"].sum())}
        )


@trainer_component
def train_model(
    config_json: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    model: Output[Model],
) -> float:
    """Fit the classifier; return the decision threshold chosen on validation."""
    from pathlib import Path

    import pandas as pd

    from app.core.config import RuntimeConfig
    from app.core.model.artifact import save_model
    from app.core.model.train import train_model as fit

    cfg = RuntimeConfig.from_json(config_json)
    fitted = fit(pd.read_parquet(train.path), pd.read_parquet(validation.path), cfg.training)
    save_model(fitted, Path(model.path))
    model.metadata.update(
        {
            "framework": "lightgbm",
            "threshold": fitted.threshold,
            "best_iteration": fitted.params["best_iteration"],
        }
    )
    return fitted.threshold


@trainer_component
def evaluate_model(
    model: Input[Model],
    holdout: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    pr_curve: Output[HTML],
) -> NamedTuple(  # type: ignore[valid-type]
    "EvaluationOutputs", [("auprc", float), ("roc_auc", float), ("metrics_json", str)]
):
    """Score the holdout; log the metrics, the confusion matrix and the PR curve."""
    import json
    from collections import namedtuple
    from pathlib import Path

    import pandas as pd

    from app.core.model.artifact import load_model
    from app.core.model.evaluate import evaluate_scores, pr_curve_html
    from app.core.model.features import labels

    candidate = load_model(Path(model.path))
    frame = pd.read_parquet(holdout.path)
    evaluation = evaluate_scores(labels(frame), candidate.score_frame(frame), candidate.threshold)
    values = evaluation.metrics()
    for name, value in values.items():
        metrics.log_metric(name, value)
    classification.log_confusion_matrix(["legit", "fraud"], evaluation.confusion_matrix())
    Path(pr_curve.path).write_text(pr_curve_html(evaluation, title="Candidate on holdout"))
    EvaluationOutputs = namedtuple("EvaluationOutputs", ["auprc", "roc_auc", "metrics_json"])
    return EvaluationOutputs(evaluation.auprc, evaluation.roc_auc, json.dumps(values))


@trainer_component
def gate(config_json: str, auprc: float, roc_auc: float, holdout: Input[Dataset]) -> NamedTuple(  # type: ignore[valid-type]
    "GateOutputs", [("passed", bool), ("reason", str)]
):
    """Pass only above the configured bars and no worse than the deployed model on this holdout."""
    from collections import namedtuple
    from pathlib import Path

    import pandas as pd

    from app.core.backends import endpoint
    from app.core.config import RuntimeConfig
    from app.core.model.gate import champion_auprc, decide

    cfg = RuntimeConfig.from_json(config_json)
    champion = endpoint(cfg).deployed()
    champion_score = (
        None
        if champion is None
        else champion_auprc(Path(champion.artifact_uri), pd.read_parquet(holdout.path))
    )
    decision = decide(
        auprc=auprc,
        roc_auc=roc_auc,
        champion_auprc=champion_score,
        champion_version=champion.version if champion else None,
        cfg=cfg.gate,
    )
    print(decision.reason)
    GateOutputs = namedtuple("GateOutputs", ["passed", "reason"])
    return GateOutputs(decision.passed, decision.reason)


@trainer_component
def register_model(
    config_json: str, model: Input[Model], snapshot_id: str, metrics_json: str
) -> str:
    """Record the candidate as the next model version; return that version."""
    import json
    from pathlib import Path

    from app.core.backends import registry
    from app.core.config import RuntimeConfig
    from app.core.model.artifact import load_model

    artifact = Path(model.path)
    # Loading proves the artifact is whole before it gets a version number.
    candidate = load_model(artifact)
    version = registry(RuntimeConfig.from_json(config_json)).register(
        artifact_path=artifact,
        snapshot_id=snapshot_id,
        threshold=candidate.threshold,
        metrics=json.loads(metrics_json),
        params=candidate.params,
    )
    return version.version


@trainer_component
def deploy_model(config_json: str, version: str) -> str:
    """Switch the endpoint to ``version``; return it."""
    from app.core.backends import endpoint, registry
    from app.core.config import RuntimeConfig

    cfg = RuntimeConfig.from_json(config_json)
    endpoint(cfg).deploy(registry(cfg).get(version))
    return version


@trainer_component
def keep_deployed_model(reason: str) -> str:
    """The rejected branch: deploy nothing; an empty version says so downstream."""
    print(f"Not deploying: {reason}")
    return ""

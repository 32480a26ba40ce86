"""The AutoML Tabular trainer's graph: Vertex AutoML trains, our steps judge.

Both trainers are judged on the same rows by the same code: ``build_dataset``'s time
split; the threshold chosen on its validation rows with the custom trainer's rule;
``evaluate_scores`` on its holdout rows; the unchanged ``gate`` step against the
champion scored on that same holdout; deploy by compare-and-swap against the champion
the gate judged.

1. ``vertex-settings`` reads project, location, budget and names out of ``config_json``
   (the pipeline keeps exactly the custom graph's three parameters) and refuses a
   config AutoML cannot run on before anything is paid for.
2. ``build-dataset`` (unchanged) -> ``export-automl-dataset``: AutoML gets only the train
   rows, re-split by time into its training/validation/test (a predefined split
   column), because Vertex refits its serving model on all three; the validation and
   holdout rows go to batch prediction without their labels.
3. Google's components: ``tabular-dataset-create`` -> ``automl-tabular-training-job``
   (binary classification, ``maximize-au-prc``, every model feature numeric) ->
   ``model-batch-predict`` (CSV in, JSONL out) on the validation + holdout rows.
4. ``evaluate-predictions`` joins the scores back by row id and evaluates like
   ``evaluate-model``; ``gate`` decides; under ``gate-passed`` ``adopt-model`` copies the
   AutoML model into the registry as the next version and ``deploy-model`` deploys it.

The gate scores the champion through the registry's ``score`` on the same holdout
rows, whichever trainer made it: a LightGBM champion is loaded and scored in the step,
an AutoML champion is scored by a Vertex AI batch prediction of its exact version.
"""

# No ``from __future__ import annotations``: KFP reads the return annotation object.
from google_cloud_pipeline_components import _image as gcpc_image
from google_cloud_pipeline_components.v1.automl.training_job import (
    AutoMLTabularTrainingJobRunOp,
)
from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
from google_cloud_pipeline_components.v1.dataset import TabularDatasetCreateOp
from kfp import dsl

from app.core.schema import MODEL_FEATURES
from app.pipeline.graph import PIPELINE_NAME, TrainingOutputs
from app.pipeline.steps.adopt_model import adopt_model
from app.pipeline.steps.build_dataset import build_dataset
from app.pipeline.steps.deploy_model import deploy_model
from app.pipeline.steps.evaluate_predictions import evaluate_predictions
from app.pipeline.steps.export_automl_dataset import export_automl_dataset
from app.pipeline.steps.gate import gate
from app.pipeline.steps.keep_deployed_model import keep_deployed_model
from app.pipeline.steps.vertex_settings import vertex_settings

# Google's components run on GCPC's own image at the installed version's tag; the
# compiler leaves them alone (it swaps only the trainer image placeholder).
GCPC_IMAGE = gcpc_image.GCPC_IMAGE_TAG

# AUPRC is what the gate judges by; AutoML's default (ROC AUC) flatters at ~0.2% fraud.
OPTIMIZATION_OBJECTIVE = "maximize-au-prc"
# Every model feature is a number (``feature_matrix`` reads them as float64).
COLUMN_SPECS = {name: "numeric" for name in MODEL_FEATURES}
# A few thousand rows to score: one small machine.
BATCH_MACHINE_TYPE = "n1-standard-4"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description=(
        "Train a Vertex AutoML Tabular fraud model on one immutable training snapshot; "
        "evaluate and gate it on the same time-ordered holdout as the custom trainer."
    ),
)
def fraud_training_pipeline_automl(
    config_json: str, snapshot_id: str, run_name: str
) -> TrainingOutputs:
    settings = vertex_settings(config_json=config_json, snapshot_id=snapshot_id, run_name=run_name)
    project = settings.outputs["project"]
    location = settings.outputs["location"]
    labels = settings.outputs["labels"]
    display_name = settings.outputs["display_name"]

    dataset = build_dataset(config_json=config_json, snapshot_id=snapshot_id)
    exported = export_automl_dataset(
        config_json=config_json,
        train=dataset.outputs["train"],
        validation=dataset.outputs["validation"],
        holdout=dataset.outputs["holdout"],
    )
    tabular = TabularDatasetCreateOp(
        project=project,
        location=location,
        display_name=display_name,
        gcs_source=exported.outputs["training_uri"],
        labels=labels,
    )
    trained = AutoMLTabularTrainingJobRunOp(
        project=project,
        location=location,
        display_name=display_name,
        optimization_prediction_type="classification",
        optimization_objective=OPTIMIZATION_OBJECTIVE,
        dataset=tabular.outputs["dataset"],
        # The names the export wrote, so the CSV and the job cannot disagree.
        target_column=exported.outputs["target_column"],
        predefined_split_column_name=exported.outputs["split_column"],
        column_specs=COLUMN_SPECS,
        budget_milli_node_hours=settings.outputs["budget_milli_node_hours"],
        model_display_name=display_name,
        model_labels=labels,
        labels=labels,
    )
    predicted = ModelBatchPredictOp(
        project=project,
        location=location,
        job_display_name=display_name,
        model=trained.outputs["model"],
        instances_format="csv",
        predictions_format="jsonl",
        gcs_source_uris=exported.outputs["prediction_uris"],
        gcs_destination_output_uri_prefix=settings.outputs["batch_output_prefix"],
        machine_type=BATCH_MACHINE_TYPE,
        starting_replica_count=1,
        max_replica_count=1,
        service_account=settings.outputs["service_account"],
        labels=labels,
    )
    evaluated = evaluate_predictions(
        predictions=predicted.outputs["gcs_output_directory"],
        validation=dataset.outputs["validation"],
        holdout=dataset.outputs["holdout"],
    )
    decision = gate(
        config_json=config_json,
        auprc=evaluated.outputs["auprc"],
        roc_auc=evaluated.outputs["roc_auc"],
        holdout=dataset.outputs["holdout"],
    )
    # The gate, adopt and deploy read or change registry state: a cached result is wrong.
    decision.set_caching_options(enable_caching=False)

    # KFP builds the branch condition from an explicit comparison, hence "== True".
    with dsl.If(decision.outputs["passed"] == True, name="gate-passed"):  # noqa: E712
        adopted = adopt_model(
            config_json=config_json,
            model=trained.outputs["model"],
            snapshot_id=snapshot_id,
            run_name=run_name,
            threshold=evaluated.outputs["threshold"],
            metrics_json=evaluated.outputs["metrics_json"],
            optimization_objective=OPTIMIZATION_OBJECTIVE,
            budget_milli_node_hours=settings.outputs["budget_milli_node_hours"],
        )
        adopted.set_caching_options(enable_caching=False)
        # The same compare-and-swap as the custom graph: the champion the gate judged.
        deployed = deploy_model(
            config_json=config_json,
            version=adopted.output,
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

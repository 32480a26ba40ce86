"""The expected permissions of each custom role, written once for the tests.

The component, the declared IAM table and the program run are each checked
against this, so a change to a role is a deliberate edit here too.
"""

from __future__ import annotations

EXPECTED_PERMISSIONS: dict[str, list[str]] = {
    "endpoint_predictor": ["aiplatform.endpoints.get", "aiplatform.endpoints.predict"],
    "endpoint_deployer": [
        "aiplatform.endpoints.deploy",
        "aiplatform.endpoints.get",
        "aiplatform.endpoints.undeploy",
        "aiplatform.endpoints.update",
    ],
    "training_pipeline": [
        "aiplatform.artifacts.create",
        "aiplatform.artifacts.get",
        "aiplatform.artifacts.update",
        "aiplatform.contexts.addContextArtifactsAndExecutions",
        "aiplatform.contexts.addContextChildren",
        "aiplatform.contexts.create",
        "aiplatform.contexts.get",
        "aiplatform.executions.addExecutionEvents",
        "aiplatform.executions.create",
        "aiplatform.executions.get",
        "aiplatform.executions.update",
        "aiplatform.metadataStores.get",
        "aiplatform.models.get",
        "aiplatform.models.list",
        "aiplatform.models.upload",
    ],
    "pipeline_launcher": [
        "aiplatform.pipelineJobs.cancel",
        "aiplatform.pipelineJobs.create",
        "aiplatform.pipelineJobs.get",
        "aiplatform.pipelineJobs.list",
    ],
    "feature_view_syncer": [
        "aiplatform.featureViewSyncs.get",
        "aiplatform.featureViewSyncs.list",
        "aiplatform.featureViews.sync",
    ],
}

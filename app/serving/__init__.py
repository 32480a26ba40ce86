"""The prediction container's server: Vertex AI's custom-container contract over stdlib HTTP.

A lightgbm model version is served by this package in its own image
(``images/serving.Dockerfile``); ``python -m app.serving`` runs it. It imports
``app.core`` only (and google-cloud-storage, lazily, for a ``gs://`` artifact), so the
image holds the model code and nothing of the backends.
"""

"""The GCP home's backends (BigQuery, GCS and Pub/Sub, Feature Store, Vertex AI, Secret
Manager) land here, one module per role, behind the Protocols of :mod:`app.core.ports`.

This package is what a GCP deployment ships of ``app/backends``: the composition root
(:mod:`app.backends`) imports its modules lazily, by path, when the runtime config names
their kinds. Until they land, those kinds fail fast there with BackendUnavailableError.
"""

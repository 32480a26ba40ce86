"""The KFP v2 training pipeline: dataset from a snapshot, train, evaluate, gate, register, deploy.

``graph`` wires the steps (one per module under ``steps/``); ``compile`` writes the YAML
that both homes run: Vertex AI Pipelines on GCP, ``kfp.local`` on this machine
(:mod:`app.backends.local.kfp_local_runner`).
"""

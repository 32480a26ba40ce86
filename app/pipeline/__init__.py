"""The KFP v2 training pipeline: snapshot, dataset, train, evaluate, gate, register and deploy.

Compiled for Vertex AI Pipelines, and run on this machine by ``kfp.local``.
"""

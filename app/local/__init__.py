"""The laptop platform: what stands in, on this machine, for the services GCP runs.

The Airflow runner (``dag.test()`` in a child process), the landing trigger, the
function server, the pipeline compiler's local deployment, the demo and the data
generator. Never shipped to GCP; only :mod:`app.cli` imports it.
"""

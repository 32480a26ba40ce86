"""Model versions and the deployment pointer: the local registry and endpoint."""

"""One Pulumi ComponentResource per concern of the GCP stack."""

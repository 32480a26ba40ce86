"""The Pulumi program (entry: ``stacks/__main__.py``), its config, and the offline plan."""

"""The local home's backends: embedded engines that need no cloud account.

DuckDB for the warehouse and lineage, SQLite for the online store, the registry and the
endpoint's pointer, a folder for the landing zone, a key file, and ``kfp.local`` running
the compiled pipeline. None of this ships to GCP.
"""

"""``fraud-mlops``, the command line: the only importer of :mod:`app.local` and :mod:`stacks`."""

"""Pulumi entry point (``Pulumi.yaml``: ``main: stacks/``)."""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this directory as a script: make the repository root importable
# so `app`, `components` and `stacks` resolve as packages.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import pulumi  # noqa: E402

from stacks.config import StackConfigError  # noqa: E402
from stacks.program import main  # noqa: E402

try:
    main(_ROOT)
except StackConfigError as exc:
    # A config mistake is the user's to fix: show the keys, not a traceback.
    raise pulumi.RunError(str(exc)) from None

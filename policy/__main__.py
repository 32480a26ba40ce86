"""Policy pack entry point: ``pulumi preview --policy-pack policy``."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from policy.pack import build_pack  # noqa: E402

build_pack()

"""``python -m app.serving``: serve the model at ``AIP_STORAGE_URI`` until SIGTERM."""

from __future__ import annotations

import sys

from app.serving.server import main

if __name__ == "__main__":
    sys.exit(main())

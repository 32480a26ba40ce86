"""``python -m images stage NAME DIR``: stage image NAME's build context under DIR and print
its path (CI then runs ``docker build -f images/NAME.Dockerfile <path>``);
``python -m images files NAME``: list the context's files."""

from __future__ import annotations

import sys
from pathlib import Path

from images import by_name
from images.requirements import ROOT


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 3 and argv[0] == "stage":
            print(by_name(argv[1]).stage_context(ROOT, Path(argv[2])))
            return 0
        if len(argv) == 2 and argv[0] == "files":
            print("\n".join(by_name(argv[1]).context_files(ROOT)))
            return 0
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("usage: python -m images stage NAME DIR | files NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

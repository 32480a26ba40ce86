"""Give the emulators' DuckDB its spatial extension without a network.

bqemulator runs ``INSTALL spatial; LOAD spatial`` when it starts and refuses to start if
that fails; ``INSTALL`` downloads from extensions.duckdb.org, which an offline machine
cannot reach. The ``duckdb-extension-spatial`` wheel (pinned in requirements.txt next to
the matching duckdb) ships the very file, so this installs it from there into the
extension directory DuckDB uses for a process whose ``HOME`` is ``--home``. Start the
emulator with that ``HOME`` and its ``INSTALL`` finds the extension already installed.

A ``HOME`` of its own, rather than the user's ``~/.duckdb``: nothing outside the
emulators' venv is written, and another DuckDB on the machine is left alone.

Run it with the emulators' own interpreter (it imports their duckdb), e.g.
``.tools/emulators/bin/python tools/emulators/prepare.py``; it prints the ``HOME`` to use.
Idempotent: an extension already installed from the same file is left as it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import duckdb_extension_spatial


def default_home() -> Path:
    # sys.prefix is the emulators' venv when run with its interpreter.
    return Path(sys.prefix) / "duckdb-home"


def shipped_extension() -> Path:
    version = f"v{duckdb.__version__}"
    path = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version
    found = path / "spatial.duckdb_extension"
    if not found.is_file():
        raise SystemExit(
            f"{found} is missing: duckdb-extension-spatial must match duckdb {duckdb.__version__}"
        )
    return found


def prepare(home: Path) -> Path:
    """Install the shipped spatial extension for DuckDB processes whose HOME is ``home``."""
    extension_dir = home / ".duckdb" / "extensions"
    extension_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"extension_directory": str(extension_dir)})
    try:
        installed = con.execute(
            "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'spatial'"
        ).fetchone()
        if not (installed and installed[0]):
            # A file path: DuckDB copies it into the extension directory, no download.
            con.execute(f"INSTALL '{shipped_extension()}'")
        # Prove it loads, so a broken install fails here rather than at emulator start.
        con.execute("LOAD spatial")
    finally:
        con.close()
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=default_home())
    args = parser.parse_args(argv)
    print(prepare(args.home.resolve()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Compile the pipeline to its YAML spec: ``python -m app.pipeline.compile OUT.yaml``.

Needs no config, environment or backend: the spec is the same for every stack, and
each run gets its config as the ``config_json`` parameter.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kfp import compiler

from app.pipeline.graph import fraud_training_pipeline


def compile_pipeline(path: Path) -> Path:
    """Write the spec to ``path``; readers see the old file or the new one, never half.

    An unchanged spec leaves the file as it is, so its mtime and hash mean something.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.yaml")
    try:
        compiler.Compiler().compile(pipeline_func=fraud_training_pipeline, package_path=str(tmp))
        if path.is_file() and path.read_bytes() == tmp.read_bytes():
            return path
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="where to write the pipeline YAML")
    args = parser.parse_args(argv)
    print(compile_pipeline(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

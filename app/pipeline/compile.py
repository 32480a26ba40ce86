"""Compile the pipeline to its YAML spec: ``python -m app.pipeline.compile OUT.yaml``.

Needs no config, environment or backend: the spec is the same for every stack, and
each run gets its config as the ``config_json`` parameter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp import compiler

from app.pipeline.pipeline import fraud_training_pipeline


def compile_pipeline(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=fraud_training_pipeline, package_path=str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="where to write the pipeline YAML")
    args = parser.parse_args(argv)
    print(compile_pipeline(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the real DAG with Airflow in-process (``dag.test()``) on a SQLite metadata DB.

The parent (:mod:`app.core.trigger`) starts this module in a child process with
Airflow's environment set, because Airflow reads its configuration when it is
first imported. Usage: ``python -m app.core.airflow_local '<run conf JSON>'``.
The last line printed is ``FRAUD_MLOPS_DAG_RESULT <json>``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

RESULT_MARKER = "FRAUD_MLOPS_DAG_RESULT"
DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"


def main(argv: list[str]) -> int:
    conf = json.loads(argv[0])
    spec = importlib.util.spec_from_file_location(
        "fraud_training_dag", DAGS_DIR / "fraud_training.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load the DAG file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG

    dag = next(v for v in vars(module).values() if isinstance(v, DAG))
    run = dag.test(run_conf=conf)
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    result = {"run_id": run.run_id, "state": str(run.state), "tasks": tasks}
    print(f"{RESULT_MARKER} {json.dumps(result)}", flush=True)
    return 0 if str(run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Each image's code, run from its staged context in a venv holding only its pins.

The nearest thing to the image without docker: ``uv pip install --offline --no-deps
--require-hashes`` of the image's requirements (from uv's cache, which ``make env``
filled), no pip in the venv, and ``PYTHONPATH`` at the staged context alone. A module
the image imports but does not pin, or a file its context lacks, fails here.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from app.core.model.artifact import load_model
from images import SERVING, TRAINER, ImageSpec

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not UV.is_file(), reason="uv is not in .tools/bin (make env installs it)"),
]


def _venv(spec: ImageSpec, tmp_path: Path) -> tuple[Path, Path]:
    """(python of a venv with exactly the image's pins, the staged context)."""
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", "3.11", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "-q",
            "--offline",
            "--no-deps",
            "--require-hashes",
            "--python",
            str(python),
            "-r",
            str(ROOT / spec.requirements),
        ],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        pytest.skip(
            f"uv's cache cannot install {spec.requirements} offline: {install.stderr[-300:]}"
        )
    return python, spec.stage_context(ROOT, tmp_path / "build")


def _env(context: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    return {**keep, "PYTHONPATH": str(context), "PYTHONNOUSERSITE": "1", **extra}


def test_serving_image_env_serves_predictions_from_its_context_alone(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    python, context = _venv(SERVING, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(context, AIP_HTTP_PORT=str(port), AIP_STORAGE_URI=str(model_dirs[0]))
    proc = subprocess.Popen(
        [str(python), "-m", "app.serving"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    model = load_model(model_dirs[0])
    rows = np.full((2, model.booster.num_feature()), 0.25)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/predict", body=json.dumps({"instances": rows.tolist()}))
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["predictions"] == model.predict(rows).tolist()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    no_pip = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True)
    assert no_pip.returncode != 0


def test_trainer_image_env_imports_every_module_and_kfps_executor(tmp_path: Path) -> None:
    python, context = _venv(TRAINER, tmp_path)
    modules = sorted(
        rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for rel in TRAINER.code_files(ROOT)
        if rel.endswith(".py")
    )
    # The steps import inside their bodies: what those bodies import, import here too.
    probe = (
        "import importlib\n"
        f"for name in {[*modules, 'kfp.dsl.executor_main']!r}:\n"
        "    importlib.import_module(name)\n"
        "from google.cloud import aiplatform_v1, bigquery, secretmanager, storage\n"
        "import lightgbm, matplotlib.figure, sklearn.metrics, pyarrow.parquet, yaml\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [str(python), "-c", probe],
        cwd=tmp_path,
        env=_env(context, MPLCONFIGDIR=str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"

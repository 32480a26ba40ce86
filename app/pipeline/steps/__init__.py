"""The pipeline's steps: thin KFP lightweight components, one per module.

KFP ships each function's source to the step's container and runs it there, so
every import sits inside the body and the work is done by ``app.core`` through the
roles of :class:`app.backends.Backends`; the trainer image installs the project (and,
locally, the steps run in this venv). Each body runs inside
:func:`app.core.step_report.reported`, so its runner learns how it ended as data.

No ``from __future__ import annotations`` in the step modules: KFP reads the real
annotation objects. NamedTuple return types are spelled inline (KFP's documented form,
which mypy does not accept) because each step's source runs on its own.
"""

from collections.abc import Callable
from typing import Any

from kfp import dsl

# What the steps are declared with: a name no registry serves, replaced in the compiled
# spec by the trainer image's digest reference (:func:`app.pipeline.compile.compile_pipeline`),
# which the stack builds and pushes. A spec that still names it was not compiled for a
# home, and :mod:`app.pipeline.compile` refuses to write one.
TRAINER_IMAGE_PLACEHOLDER = "fraud-mlops.invalid/trainer:unresolved"


def trainer_step(func: Callable[..., Any]) -> Any:
    """A lightweight component on the trainer image, with no pip install at run time."""
    return dsl.component(func, base_image=TRAINER_IMAGE_PLACEHOLDER, install_kfp_package=False)

"""Step: the deployment gate, judged on the candidate's own holdout rows."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input

from app.pipeline.steps import trainer_step


@trainer_step
def gate(config_json: str, auprc: float, roc_auc: float, holdout: Input[Dataset]) -> NamedTuple(  # type: ignore[valid-type]
    "GateOutputs", [("passed", bool), ("reason", str), ("champion", str)]
):
    """Pass only above the configured bars and no worse than the deployed model on this holdout.

    ``champion`` is the version judged against ("" when none was deployed): the deploy
    step swaps only if it is still the champion, so a judgement never outlives its state.
    """
    from collections import namedtuple

    import pandas as pd

    from app.backends import Backends
    from app.core.config import RuntimeConfig
    from app.core.model.gate import champion_auprc, decide
    from app.core.step_report import reported

    with reported("gate"):
        cfg = RuntimeConfig.from_json(config_json)
        backends = Backends(cfg)
        champion = backends.endpoint.deployed()
        champion_score = None
        if champion is not None:
            rows = pd.read_parquet(holdout.path)
            # Scored through the registry, wherever the champion runs (loaded here, or a
            # batch prediction for an AutoML model): the same rows, whichever trainer.
            scores = backends.registry.score(champion, rows)
            champion_score = champion_auprc(scores, rows, champion.threshold)
        decision = decide(
            auprc=auprc,
            roc_auc=roc_auc,
            champion_auprc=champion_score,
            champion_version=champion.version if champion else None,
            cfg=cfg.gate,
        )
        print(decision.reason)
    GateOutputs = namedtuple("GateOutputs", ["passed", "reason", "champion"])
    return GateOutputs(decision.passed, decision.reason, champion.version if champion else "")

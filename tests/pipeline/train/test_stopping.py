import pytest

from jobs.cli import build_parser
from pipeline.train.stopping import (
    Plateau,
    classifier_plateau,
    finetune_plateau,
    length,
    stopped,
)
from pipeline.train.trainer import settings
from schemas.config import TrainConfig

ACC = Plateau("holdout_accuracy", True, 3, 0.01, "epoch", "epoch")
LOSS = Plateau("loss", False, 2, 0.01, "iteration", "iteration")


def _history(key, values, step_key="epoch", every=1):
    return [{key: v, step_key: every * (i + 1)} for i, v in enumerate(values)]


def test_accuracy_stops_once_the_last_reports_gain_under_one_percent_of_the_best_before():
    rising = [0.30, 0.40, 0.45, 0.48, 0.50]
    assert ACC.reason(_history("holdout_accuracy", rising)) is None
    flat = [0.30, 0.40, 0.500, 0.502, 0.499, 0.503]  # +0.6% over the 3 last
    reason = ACC.reason(_history("holdout_accuracy", flat))
    assert reason.startswith("plateau: held-out accuracy improved by 0.60% (< 1%)")
    assert reason.endswith("best 0.5030 at epoch 6")
    assert ACC.reason(_history("holdout_accuracy", [0.5, 0.5, 0.5])) is None  # too few yet


def test_loss_is_lower_is_better_and_names_its_best_iteration():
    falling = _history("loss", [2.0, 1.5, 1.2, 1.0], "iteration", 250)
    assert LOSS.reason(falling) is None
    flat = _history("loss", [2.0, 1.0, 1.05, 0.995], "iteration", 250)
    reason = LOSS.reason(flat)
    assert "training loss improved by 0.50%" in reason and reason.endswith("at iteration 1000")
    worse = _history("loss", [2.0, 1.0, 1.2, 1.3], "iteration", 250)
    assert "improved by -20.00%" in LOSS.reason(worse) and "at iteration 500" in LOSS.reason(worse)


def test_auto_is_a_count_up_to_its_cap_and_fixed_counts_keep_their_record():
    cfg = TrainConfig(epochs="auto", max_epochs=40, iterations=500)
    assert length(cfg.epochs, cfg.max_epochs) == 40 and length(cfg.iterations, 9) == 500
    assert classifier_plateau(cfg).key == "holdout_accuracy" and finetune_plateau(cfg) is None
    fixed = settings(TrainConfig(epochs=8))
    assert not {"max_epochs", "max_iterations", "patience", "min_improvement"} & set(fixed)
    assert {"max_epochs", "patience"} <= set(settings(cfg)) and "max_iterations" not in settings(
        cfg
    )
    with pytest.raises(ValueError, match="positive integer or auto"):
        TrainConfig(iterations="soon")
    with pytest.raises(ValueError, match="holdout_every"):
        classifier_plateau(TrainConfig(epochs="auto", holdout_every=0))
    assert stopped([{"loss": 1.0}, {"loss": 1.0, "stop": "plateau: x"}]) == "plateau: x"
    # a fixed-length run taken over by `auto` whose curve had already flattened: no step is
    # taken, and its reason is read from the history it brought (not "reached its cap")
    flat = _history("holdout_accuracy", [0.5, 0.8, 0.9, 0.9, 0.9, 0.9])
    assert stopped(flat) is None and stopped(flat, ACC).startswith("plateau")
    assert stopped(_history("holdout_accuracy", [0.5, 0.6, 0.7, 0.8]), ACC) is None


def test_the_command_line_takes_auto_or_a_number():
    args = build_parser().parse_args(["train-det", "--data", "d", "--work", "w", "--iterations",
                                      "auto", "--max-iterations", "3000"])  # fmt: skip
    assert args.iterations == "auto" and args.max_iterations == 3000
    args = build_parser().parse_args(["train-cls", "--data", "d", "--work", "w", "--epochs", "5"])
    assert args.epochs == 5

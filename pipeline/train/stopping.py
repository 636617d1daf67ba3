"""When a fit of ``epochs: auto`` (train-cls) or ``iterations: auto`` (train-det) stops.

A fit stops at a plateau of the metric it reports: the classifier's held-out accuracy after
each epoch, the fine-tune's mean training loss over each ``checkpoint_every`` iterations (the
paper holds no windows out; its minibatches are drawn afresh from hundreds of thousands of
windows, so their loss tracks the unseen ones until the model fits them). A plateau: the best
of the last ``patience`` reports improves on the best before them by less than
``min_improvement`` of it (relative). Or the fit reaches its cap (``max_epochs`` /
``max_iterations``). Every worker sees the same all-reduced metrics, so all decide alike; the
decision is written into the report's history, which the checkpoint carries, so that a resumed
fit that had stopped stays stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.config import TrainConfig

AUTO = "auto"
LABELS = {"holdout_accuracy": "held-out accuracy", "loss": "training loss"}


@dataclass(frozen=True)
class Plateau:
    key: str  # the metric, in each history entry
    higher_is_better: bool
    patience: int
    min_improvement: float  # relative
    unit: str  # "epoch", "iteration"
    step_key: str  # the history entry's step

    def reason(self, history: list[dict]) -> str | None:
        """Why to stop after the last entry of ``history``; None: go on."""
        values = [h[self.key] for h in history if self.key in h]
        if len(values) <= self.patience:
            return None
        sign = 1.0 if self.higher_is_better else -1.0
        before = max(sign * v for v in values[: -self.patience])
        recent = max(sign * v for v in values[-self.patience :])
        gain = (recent - before) / max(abs(before), 1e-12)
        if gain >= self.min_improvement:
            return None
        steps = [h[self.step_key] for h in history if self.key in h]
        best_at = steps[max(range(len(values)), key=lambda i: (sign * values[i], -i))]
        what = LABELS.get(self.key, self.key)
        return (
            f"plateau: {what} improved by {100 * gain:.2f}% (< {100 * self.min_improvement:g}%)"
            f" over the last {self.patience} reports; best {sign * max(before, recent):.4f} at "
            f"{self.unit} {best_at}"
        )


def check(plateau: Plateau | None, history: list[dict], metrics: dict) -> str | None:
    """After the report ``metrics``: why to stop now (None: go on), also put into
    ``metrics`` as ``stop`` so that the checkpoint's history carries it."""
    stop = plateau.reason([*history, metrics]) if plateau else None
    if stop:
        metrics["stop"] = stop
    return stop


def stopped(history: list[dict], plateau: Plateau | None = None) -> str | None:
    """The reason a fit stopped early: its last report's, or, for a fit resumed after its
    curve had flattened (a longer setting over a finished run: no step taken), ``plateau``'s
    reading of its history. Without the second, the report read "reached its cap"."""
    if not history:
        return None
    return history[-1].get("stop") or (plateau.reason(history) if plateau else None)


def length(value: int | str, cap: int) -> int:
    """A fit's most epochs or iterations: ``value``, or ``cap`` for ``auto``."""
    return cap if value == AUTO else int(value)


def classifier_plateau(cfg: TrainConfig) -> Plateau | None:
    """train-cls's rule for ``epochs: auto`` (None: a fixed count)."""
    if cfg.epochs != AUTO:
        return None
    if cfg.holdout_every <= 0:
        raise ValueError("epochs auto stops on the held-out accuracy: holdout_every must be > 0")
    return Plateau("holdout_accuracy", True, cfg.patience, cfg.min_improvement, "epoch", "epoch")


def finetune_plateau(cfg: TrainConfig) -> Plateau | None:
    """train-det's rule for ``iterations: auto`` (None: a fixed count)."""
    if cfg.iterations != AUTO:
        return None
    return Plateau("loss", False, cfg.patience, cfg.min_improvement, "iteration", "iteration")


def auto_only_settings(cfg: TrainConfig) -> tuple[str, ...]:
    """The settings that shape nothing unless a count is ``auto``: left out of a fixed-length
    fit's record, so that models trained before they existed stay current."""
    unused = []
    if cfg.epochs != AUTO:
        unused.append("max_epochs")
    if cfg.iterations != AUTO:
        unused.append("max_iterations")
    if AUTO not in (cfg.epochs, cfg.iterations):
        unused += ["patience", "min_improvement"]
    return tuple(unused)

"""The charts of the evaluation and the report (matplotlib, Agg): AP per category, false-positive
types (paper Fig. 5), relative effectiveness (Fig. 3b), training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.evaluate.devkit import ERROR_TYPES  # noqa: E402
from pipeline.io import storage  # noqa: E402
from pipeline.workdir import FINETUNES  # noqa: E402


def _save_png(fig, url: str) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    storage.write_bytes(url, buf.getvalue())


def relative_chart(rows: list[dict], url: str) -> None:
    oracle = next((r["map_heldout"] for r in rows if r["name"] == "oracle"), None) or 0
    names = [r["name"] for r in rows if r["name"] != "oracle"]
    values = [
        (r["map_heldout"] or 0) / oracle if oracle else 0 for r in rows if r["name"] != "oracle"
    ]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(names, values, color="#4878a8")
    ax.set_ylabel("held-out mAP / oracle")
    ax.set_ylim(0, max(1.0, *values) * 1.05)
    ax.set_title("Relative effectiveness (paper Fig. 3b)")
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    _save_png(fig, url)


def error_chart(metrics: dict[str, dict], names: list[str], url: str) -> None:
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), sharey=True)
    for ax, name in zip(axes if len(names) > 1 else [axes], names, strict=True):
        errors = metrics[name]["errors_heldout"]
        depths = [int(d) for d in errors]
        ax.stackplot(
            depths, *[[errors[str(d)][t] for d in depths] for t in ERROR_TYPES], labels=ERROR_TYPES
        )
        ax.set_xscale("log")
        ax.set_title(f"{name}: top false positives, held-out")
        ax.set_xlabel("number of false positives")
    axes_first = axes[0] if len(names) > 1 else axes
    axes_first.set_ylabel("share")
    axes_first.legend(loc="lower left", fontsize=8)
    _save_png(fig, url)


def ap_chart(doc: dict, url: str) -> None:
    """Per-category AP of one detector, sorted, coloured by set: trained (B), held-out (A)."""
    cats = sorted((c for c in doc["categories"] if c["ap"] is not None), key=lambda c: -c["ap"])
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(cats)), 3))
    colours = [{"B": "#4878a8", "A": "#e0803a"}.get(c["set"], "#999999") for c in cats]
    ax.bar(range(len(cats)), [c["ap"] for c in cats], color=colours)
    ax.set_xticks([])
    ax.set_ylabel("AP")
    ax.set_title(
        f"{doc['detector']} on {doc['split']}: AP per category (blue B, orange A, grey mixed)"
    )
    _save_png(fig, url)


def curves_chart(fits: dict[str, dict], url: str) -> None:
    """The training curves the checkpoints carried (``fits``: ``report.fit_records``): the
    classifier's held-out accuracy and loss per epoch, each fine-tune's loss per reporting
    interval (did training converge?)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
    fig.subplots_adjust(wspace=0.5)  # room for the accuracy axis between the two
    cls = fits["classifier"]["history"]
    epochs = [h["epoch"] for h in cls]
    # accuracy (0-1) on its own axis: on the loss's (0-7) it read as a flat line
    acc_axis = left.twinx()
    acc = acc_axis.plot(epochs, [h["holdout_accuracy"] for h in cls], "o-", color="C0",
                        label="held-out accuracy")  # fmt: skip
    loss = left.plot(epochs, [h["loss"] for h in cls], "s--", color="C1", label="training loss")
    acc_axis.set_ylim(0, 1)
    acc_axis.set_ylabel("held-out accuracy")
    left.set_ylabel("training loss")
    left.set_xlabel("epoch")
    left.set_title("classifier (train-cls)")
    left.legend(
        acc + loss, [line.get_label() for line in acc + loss], fontsize=8, loc="center right"
    )
    for row in FINETUNES:
        if row in fits:
            h = fits[row]["history"]
            right.plot([x["iteration"] for x in h], [x["loss"] for x in h], "o-", label=row)
    right.set_xlabel("iteration")
    right.set_ylabel("training loss (mean since the last point)")
    right.set_title("detection fine-tunes (train-det)")
    right.legend(fontsize=8)
    _save_png(fig, url)

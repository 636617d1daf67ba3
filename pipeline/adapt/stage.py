"""``lsda adapt``: the detector over all K categories (+ background) from the classifier and
a detection fine-tune, and the neighbours chosen for every category without boxes."""

from __future__ import annotations

import pyarrow as pa

from pipeline import lineage
from pipeline.adapt.rows import adapt_rows, apply_rows, with_bias
from pipeline.io import storage
from pipeline.model.checkpoints import load_model, save_model
from pipeline.workdir import AVG_OFFSET, WorkDir, finetune_run, knn_name

NEIGHBOUR_SCHEMA = pa.schema(
    [
        ("wnid", pa.string()),
        ("k", pa.int32()),
        ("neighbours", pa.list_(pa.string())),
        ("distances", pa.list_(pa.float32())),
    ]
)


def default_name(k: int, num_b: int) -> str:
    return AVG_OFFSET if k >= num_b else knn_name(k) if k > 0 else "no-adapt"


def run_adapt(
    work: str, det: str, k: int, name: str | None = None, overwrite: bool = False
) -> dict:
    """Adapt ``det-<det>.pt`` with k-NN offsets; writes ``detector-<name>.pt``."""
    wd = WorkDir(work)
    cls_model, categories, _ = load_model(wd.classifier())
    det_model, det_categories, payload = load_model(wd.finetuned(det))
    if det_categories != categories:
        raise ValueError(f"{wd.finetuned(det)} and {wd.classifier()} have other category maps")
    trained = payload["trained"]
    name = name or default_name(k, len(trained))
    out = wd.adapted(name)
    inputs = {"cls": lineage.of(wd.classifier()), "det": lineage.of(wd.finetuned(det)), "k": k}
    if not overwrite and lineage.is_current(out, inputs, f"adapt {name}"):
        return {"model": out, "skipped": True}
    b_rows = categories.rows(trained)
    trained_set = set(trained)
    a_wnids = [w for w in categories.wnids if w not in trained_set]
    a_rows = categories.rows(a_wnids)
    result = adapt_rows(with_bias(cls_model.output), with_bias(det_model.output), a_rows, b_rows, k)
    apply_rows(det_model.output, a_rows, result.rows)
    keep = {key: payload[key] for key in ("input_size", "pixel_mean", "set_b", "trained")}
    save_model(
        out,
        det_model,
        payload["model"],
        categories,
        kind="detector",
        k=k,
        name=name,
        base=finetune_run(det),
        **keep,
    )
    table = pa.Table.from_pylist(
        [
            {
                "wnid": w,
                "k": min(k, len(trained)),  # |B|: the global average, no list needed
                "neighbours": [trained[int(i)] for i in result.neighbours[j]],
                "distances": result.distances[j].tolist(),
            }
            for j, w in enumerate(a_wnids)
        ],
        schema=NEIGHBOUR_SCHEMA,
    )
    storage.write_table(wd.neighbours(name), table)
    lineage.record(out, inputs)
    return {"model": out, "name": name, "k": k, "adapted": len(a_rows), "set_b": len(b_rows)}

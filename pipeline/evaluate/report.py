"""The ablation report: ``WORK/report/metrics.json``, ``index.html`` and its charts.

The table of the paper's Table 1 rows (held-out, trained and all categories), the relative
effectiveness of Figure 3b (each row's held-out mAP as a fraction of the oracle's), the
false-positive types of Figure 5 for the classifier and k-NN rows, and example detections of
held-out categories.
"""

from __future__ import annotations

import base64
import html
import json

from pipeline.data.categories import read_categories
from pipeline.detect.draw import draw_detections
from pipeline.detect.outputs import ds_urls
from pipeline.evaluate.category_page import best_per_category, write_category_page
from pipeline.evaluate.charts import curves_chart, error_chart, relative_chart
from pipeline.evaluate.stage import ground_truth
from pipeline.io import storage
from pipeline.workdir import FINETUNES, WorkDir, knn_name, mil_name
from schemas.config import PipelineConfig, to_dict
from schemas.metrics import validate_report

PER_CATEGORY = 6  # detections shown per held-out category on categories.html


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def format_table(rows: list[dict]) -> str:
    lines = [f"{'row':<12} {'held-out':>9} {'trained':>9} {'all':>9}"]
    lines += [
        f"{r['name']:<12} {_pct(r['map_heldout']):>9} {_pct(r['map_trained']):>9} "
        f"{_pct(r['map_all']):>9}"
        for r in rows
    ]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list]) -> str:
    """A plain HTML table; cells are escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def ablation_table(rows: list[dict], split: str) -> str:
    """The rows with links to each detector's detections (COCO-style JSON) and metrics."""
    out = []
    work = WorkDir("..")  # links relative to WORK/report
    for r in rows:
        name = r["name"]
        links = (
            f'<a href="{work.detection_coco(name, split)}">detections</a> · '
            f'<a href="{work.metrics(name, split)}">metrics</a>'
        )
        cells = [_pct(r[k]) for k in ("map_heldout", "map_trained", "map_all")]
        out.append(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f"<td>{links}</td></tr>"
        )
    head = "<tr><th>row</th><th>held-out</th><th>trained</th><th>all</th><th>files</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(out)}</tbody></table>"


def category_table(metrics: dict[str, dict], key_row: str) -> str:
    """AP (%) of every category for every row, held-out categories first, then trained; each
    group sorted by ``key_row``'s AP (the first row's when it is missing), best first."""
    names = list(metrics)
    key_row = key_row if key_row in metrics else names[0]
    per_row = {n: {c["wnid"]: c for c in metrics[n]["categories"]} for n in names}
    cats = list(per_row[key_row].values())
    order = {"A": 0, "B": 1}

    def sort_key(c: dict):
        return (order.get(c["set"], 2), -(c["ap"] if c["ap"] is not None else -1.0))

    rows = [
        [c["name"], {"A": "held-out", "B": "trained"}.get(c["set"], c["set"]), c["gt"]]
        + [_pct(per_row[n][c["wnid"]]["ap"]) for n in names]
        for c in sorted(cats, key=sort_key)
    ]
    return html_table(["category", "set", "objects", *names], rows)


def _examples(
    data: str, work: str, row: str, split: str, heldout: set[str], limit: int, table, urls
) -> list[str]:
    """``row``'s best detections of held-out categories drawn on up to ``limit`` images."""
    rows = [r for r in table.to_pylist() if r["wnid"] in heldout and r["score"] > 0]
    if not rows:
        return []
    import pyarrow as pa

    names = {c.wnid: c.name.split("_", 1)[-1].replace("_", " ") for c in read_categories(data)}
    best = sorted(rows, key=lambda r: -r["score"])
    chosen = list(dict.fromkeys(r["image_id"] for r in best))[:limit]
    picked = pa.Table.from_pylist([r for r in rows if r["image_id"] in chosen], schema=table.schema)
    return draw_detections(work, row, split, picked, urls, limit, names=names)


def _category_page(data: str, work: str, row: str, split: str, metrics: dict, table, urls):
    """``categories.html`` of ``row``'s held-out categories, best AP first."""
    held = [c for c in metrics[row]["categories"] if c["set"] == "A"]
    held.sort(key=lambda c: -(c["ap"] if c["ap"] is not None else -1.0))
    best = best_per_category(table, {c["wnid"] for c in held}, PER_CATEGORY)
    write_category_page(work, split, best, held, urls, ground_truth(data, split), row)


def fit_records(work: str) -> dict[str, dict]:
    """Each fit of the run that has a model file (the classifier always): its history, config
    and stop reason, read once for the curves and the "ended by" table."""
    from pipeline.model.checkpoints import load_payload

    wd = WorkDir(work)
    urls = {"classifier": wd.classifier()}
    urls |= {row: wd.finetuned(name) for row, name in FINETUNES.items()}
    fits = {}
    for model, url in urls.items():
        if model == "classifier" or storage.exists(url):
            payload = load_payload(url)
            fits[model] = {
                "history": payload.get("history", []),
                "config": payload.get("config", {}),
                "stop": payload.get("stop"),
            }
    return fits


def training_ends(fits: dict[str, dict]) -> list[list[str]]:
    """How each fit of the run ended: (model, length run, why it ended there)."""
    out = []
    for model, fit in fits.items():
        count = "epoch" if model == "classifier" else "iteration"
        history, cfg = fit["history"], fit["config"]
        setting = cfg.get(f"{count}s")
        ran = history[-1][count] if history else 0
        if fit["stop"]:
            why = fit["stop"]
        elif setting == "auto":
            why = f"reached its cap (max_{count}s {cfg.get(f'max_{count}s')})"
        else:
            why = f"its fixed length ({count}s: {setting})"
        out.append([model, f"{ran} {count}s", why])
    return out


def _img(url: str) -> str:
    data = base64.b64encode(storage.read_bytes(url)).decode()
    kind = "png" if url.endswith(".png") else "jpeg"
    return f'<img src="data:image/{kind};base64,{data}">'


MIL_KEYS = (
    "refined",
    "bags",
    "windows",
    "cpu_seconds_per_category",
    "seconds",
    "skipped_bags",
    "negatives_pool",
    "pool_seconds",
)


def mil_summary(work: str, run_cfg: PipelineConfig) -> dict | None:
    """What ``lsda mil`` did for the report: categories, bags, its cost per category."""
    url = storage.join(WorkDir(work).mil(mil_name(knn_name(run_cfg.k))), "summary.json")
    if not run_cfg.mil or not storage.exists(url):
        return None
    summary = json.loads(storage.read_text(url))
    return {k: summary.get(k) for k in MIL_KEYS}


def mil_line(mil: dict | None) -> str:
    if not mil:
        return ""
    pool = ""
    if mil.get("negatives_pool"):  # 0: every task was done by an earlier run
        pool = (
            f", against the hardest of a pool of {mil['negatives_pool']} background windows "
            f"of DET train (built once, {mil['pool_seconds']} s)"
        )
    return (
        f"<p>The -mil row: {mil['refined']} held-out rows refined on {mil['bags']} of their "
        f"classification images ({mil['windows']} windows), "
        f"{mil['cpu_seconds_per_category']} CPU seconds per category{pool} (docs/mil.md).</p>"
    )


def write_report(
    data: str, work: str, metrics: dict[str, dict], run_cfg: PipelineConfig, timings: dict
) -> dict:
    rows = [
        {
            "name": n,
            "map_trained": m["map_trained"],
            "map_heldout": m["map_heldout"],
            "map_all": m["map_all"],
        }
        for n, m in metrics.items()
    ]
    doc = {
        "rows": rows,
        "split": run_cfg.eval_split,
        "data": data,
        "config": to_dict(run_cfg),
        "seconds": timings,
        "detectors": {
            n: {k: v for k, v in m.items() if k != "categories"} for n, m in metrics.items()
        },
    }
    mil = mil_summary(work, run_cfg)
    if mil:
        doc["mil"] = mil
    problems = validate_report(doc)
    if problems:
        raise RuntimeError(f"report metrics.json would not fit its schema: {problems}")
    rdir = WorkDir(work).report()
    knn = knn_name(run_cfg.k)
    storage.write_text(storage.join(rdir, "metrics.json"), json.dumps(doc, indent=1))
    relative_chart(rows, storage.join(rdir, "relative.png"))
    error_chart(
        metrics,
        [n for n in ("classifier", knn) if n in metrics],
        storage.join(rdir, "errors.png"),
    )
    fits = fit_records(work)
    curves_chart(fits, storage.join(rdir, "curves.png"))
    heldout = {c["wnid"] for c in next(iter(metrics.values()))["categories"] if c["set"] == "A"}
    split = run_cfg.eval_split
    examples, category_link = [], ""
    if knn in metrics:
        table = storage.read_table(WorkDir(work).detection_table(knn, split))
        urls = ds_urls(work, split, data)
        examples = _examples(data, work, knn, split, heldout, run_cfg.draw, table, urls)
        _category_page(data, work, knn, split, metrics, table, urls)
        category_link = (
            '<p><a href="categories.html">What each held-out detector finds</a>: the best '
            "detections of every category without boxes, right or wrong.</p>"
        )
    table = format_table(rows)
    timing_rows = [[stage, f"{s:.1f}"] for stage, s in timings.items()]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>LSDA report</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 12px;text-align:right}}
td:first-child,th:first-child{{text-align:left}} tbody tr:nth-child(odd){{background:#f4f4f4}}
img{{margin:4px;max-width:100%}}</style></head><body>
<h1>LSDA ablation on {html.escape(data)}</h1>
<p>mAP (%) on {html.escape(split)}, ILSVRC devkit protocol. Held-out: categories
without boxes (set A); trained: set B. All numbers: <a href="metrics.json">metrics.json</a>.</p>
{ablation_table(rows, split)}{mil_line(mil)}
<h2>Relative effectiveness</h2>{_img(storage.join(rdir, "relative.png"))}
<h2>False positives on held-out categories</h2>{_img(storage.join(rdir, "errors.png"))}
<h2>Training curves</h2>{_img(storage.join(rdir, "curves.png"))}
{html_table(["model", "trained for", "ended by"], training_ends(fits))}
<h2>Example detections of held-out categories (k-NN adapted detector)</h2>
{"".join(_img(u) for u in examples)}
<h2>AP per category (%)</h2>{category_link}{category_table(metrics, knn)}
<h2>Time per stage (s)</h2>{html_table(["stage", "seconds"], timing_rows)}
</body></html>"""
    storage.write_text(WorkDir(work).report_page(), page)
    print(table, flush=True)
    return doc

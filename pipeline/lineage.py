"""What each artifact was made from: a stage skips its work only when the artifact exists *and*
was made from today's inputs.

Beside each model, fine-tune run and detection folder, ``<artifact>.inputs.json`` records the
stage's inputs (the settings of its config section, and the fingerprints of the artifacts it
read: an extraction's ``params.json`` and done count, an upstream model's record) and their
fingerprint. A stage whose recorded fingerprint differs from the current one (or that has no
record) redoes its work and says so in one line, naming what changed; a change upstream
(``extract --overwrite``, a new ``[train_det]`` setting) so reaches every stage after it, and
none before. Extraction keeps its own, stricter contract (``params.json``: a work dir made
with other settings is refused, not redone).
"""

from __future__ import annotations

import hashlib
import json

from pipeline.io import storage

SUFFIX = ".inputs.json"


def fingerprint(inputs: dict) -> str:
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _sidecar(url: str) -> str:
    return url.rstrip("/") + SUFFIX


def recorded(url: str) -> dict | None:
    """The record beside ``url`` (None: none)."""
    side = _sidecar(url)
    return json.loads(storage.read_text(side)) if storage.exists(side) else None


def _plain(inputs: dict) -> dict:
    """``inputs`` as their record holds them (JSON values)."""
    return json.loads(json.dumps(inputs, default=str))


def record(url: str, inputs: dict) -> None:
    """Written last, once ``url`` is complete: a record means a finished artifact."""
    doc = {"fingerprint": fingerprint(inputs), "inputs": _plain(inputs)}
    storage.write_text(_sidecar(url), json.dumps(doc, indent=1, sort_keys=True))


def of(url: str) -> str:
    """An artifact's fingerprint, for the inputs of the stages that read it."""
    doc = recorded(url)
    return doc["fingerprint"] if doc else "unrecorded"


def of_extraction(work: str, split: str, oracle: bool = False) -> str:
    """An extraction's fingerprint: its settings and inputs (``params.json``) and what it has
    done so far (a re-run that completes retried images changes it)."""
    from pipeline.workdir import WorkDir

    sdir = WorkDir(work).extract(split, oracle)
    parts = []
    for name in ("params.json", "summary.json"):
        url = storage.join(sdir, name)
        parts.append(storage.read_text(url) if storage.exists(url) else "")
    summary = json.loads(parts[1] or "{}")
    return fingerprint({"params": parts[0], "done": summary.get("done")})


def of_images(images: list[str]) -> str:
    """A list of user images' fingerprint (its URLs)."""
    return fingerprint({"images": sorted(images)})


def changed(url: str, inputs: dict) -> list[str] | None:
    """None if ``url``'s record matches ``inputs``; else the names of the inputs that differ
    (``["no record"]`` when there is none)."""
    doc = recorded(url)
    if doc is None:
        return ["no record"]
    if doc["fingerprint"] == fingerprint(inputs):
        return None
    return _differences(_plain(inputs), doc.get("inputs", {}))


def _differences(now: dict, old: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ; inside settings, the settings (``config.lr``)."""
    out = []
    for k in sorted(now.keys() | old.keys()):
        a, b = now.get(k), old.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out or ["format"]


def is_current(url: str, inputs: dict, stage: str) -> bool:
    """Whether ``url`` exists and was made (completely: its record is written last) from
    ``inputs``. An existing one that was not is about to be redone: says why in one line,
    and forgets its record, so that a redo cut short is not taken for the old artifact."""
    if not storage.exists(url):
        return False
    diff = changed(url, inputs)
    if diff is None:
        return True
    print(f"{stage}: redoing {url}: its inputs changed ({', '.join(diff)})", flush=True)
    storage.remove_tree(_sidecar(url))
    return False

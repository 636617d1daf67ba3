"""Planning full ImageNet: listing, tar indexing and shard planning at 10K, 100K and 1.3M images.

Builds its own data on this machine: N/650 synthetic ``<wnid>.tar`` of tiny JPEGs (ImageNet's
full-release layout) on local disk and, for the smaller sizes, on a moto S3 endpoint on
127.0.0.1; plus a few tars of ImageNet-sized members (110 KB) for the bytes-read ratio. Each
measurement runs in a fresh driver process (its own local Ray) and prints, per size:

- driver wall time of listing + indexing, and of planning (no selective search);
- driver peak RSS, and its growth beyond the fixed part (Python, pyarrow, Ray client);
- bytes read from storage per indexed member and per tar, first run and second (cached) run;
- the summary's cost: reading every shard's marker (there is no manifest merge);
- the same listing + planning by the obvious alternative (today's serial readers in the
  driver: ``tarfile`` per tar, a Python dict per image, sort, JSON work units) and the ratio;
- indexing alone with 1 worker and with 2, and the growth per 10x images.

Usage: python bench/scale.py [--sizes 10000,100000,1300000] [--s3-sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MEMBERS = 650  # images per synthetic tar
SHARD_SIZE = 64


def _tiny_jpeg() -> bytes:
    import cv2
    import numpy as np

    return cv2.imencode(".jpg", np.full((8, 8, 3), 127, np.uint8))[1].tobytes()


def _tar_bytes(wnid: str, members: int, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for i in range(members):
            info = tarfile.TarInfo(f"{wnid}_{i}.JPEG")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def build(root: str, images: int, members: int = MEMBERS, payload: bytes | None = None) -> int:
    """``images`` images in tars of ``members`` under ``<root>/CLS/tars/``; returns tar count."""
    from pipeline.data import layout
    from pipeline.io import storage

    payload = payload or _tiny_jpeg()
    tars = -(-images // members)
    fs, base = storage.get_fs(storage.join(root, layout.CLS_TARS))
    fs.makedirs(base, exist_ok=True)
    for t in range(tars):
        n = min(members, images - t * members)
        wnid = f"n{t:08d}"
        fs.pipe_file(f"{base}/{wnid}.tar", _tar_bytes(wnid, n, payload))
    return tars


def _rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    return int(hwm.split()[1]) / 1024


def measure(root: str, work: str, cpus: int, index_only: bool) -> dict:
    """One driver's listing + indexing + planning (run in a child process)."""
    from pipeline.data.cls_index import index_cls
    from pipeline.extract import plan as planner
    from pipeline.extract.stage import _read_markers
    from pipeline.io import storage
    from pipeline.io.ray_env import start_local_ray

    start_local_ray(num_cpus=cpus, log_to_driver=False)
    fixed = _rss_mb()
    t0 = time.perf_counter()
    refs, counts, _ = index_cls(root, storage.join(work, "index"))
    t1 = time.perf_counter()
    out = {
        "rows": sum(c["rows"] for c in counts),
        "tars_scanned": sum(c["tars_scanned"] for c in counts),
        "tar_bytes_read": sum(c["tar_bytes_read"] for c in counts),
        "index_s": round(t1 - t0, 2),
    }
    if not index_only:
        plan = planner.plan_split(
            refs, [c["rows"] for c in counts], "mixed", 0, SHARD_SIZE, storage.join(work, "plan")
        )
        t2 = time.perf_counter()
        for s in range(plan.shards):  # what finished shards leave: one small marker each
            marker = {"shard": s, "images": SHARD_SIZE, "done": SHARD_SIZE, "proposals": 0}
            storage.write_text(
                storage.join(work, "_done", f"part-{s:05d}.json"), json.dumps(marker)
            )
        t3 = time.perf_counter()
        markers = _read_markers(work)
        images = sum(m["images"] for m in markers.values())
        out.update(
            plan_s=round(t2 - t1, 2),
            shards=plan.shards,
            summary_s=round(time.perf_counter() - t3, 2),
            marker_images=images,
        )
    out.update(fixed_rss_mb=round(fixed), peak_rss_mb=round(_rss_mb()))
    return out


def measure_serial(root: str) -> dict:
    """The obvious alternative: today's readers in the driver, a dict per image."""
    import hashlib

    from pipeline.data import layout
    from pipeline.io import storage

    fixed = _rss_mb()
    t0 = time.perf_counter()
    items = []
    for url in storage.find(storage.join(root, layout.CLS_TARS), (".tar",)):
        fs, path = storage.get_fs(url)
        with fs.open(path, "rb", block_size=1 << 20) as f, tarfile.open(fileobj=f) as t:
            wnid = storage.stem(url)
            for m in t:
                name = os.path.splitext(m.name)[0]
                items.append(
                    {
                        "image_id": f"{wnid}/{name}",
                        "image_url": url,
                        "wnid": wnid,
                        "name": name,
                        "offset": m.offset_data,
                        "size": m.size,
                    }  # fmt: skip
                )
    items.sort(key=lambda it: it["image_id"])
    items.sort(key=lambda it: hashlib.sha1(f"0:{it['image_id']}".encode()).hexdigest())
    units = [json.dumps(items[i : i + SHARD_SIZE]) for i in range(0, len(items), SHARD_SIZE)]
    return {
        "rows": len(items),
        "units": len(units),
        "serial_s": round(time.perf_counter() - t0, 2),
        "fixed_rss_mb": round(fixed),
        "peak_rss_mb": round(_rss_mb()),
    }


def _child(*args: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=os.environ)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _s3_server():
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from pipeline.io.ray_env import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        LSDA_S3_ENDPOINT=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket="lsda-bench"
    )
    return server


def run_size(where: str, root: str, work: str, n: int, serial: bool) -> dict:
    t0 = time.perf_counter()
    tars = build(root, n)
    built = time.perf_counter() - t0
    first = _child("--measure", root, f"{work}/first", "--cpus", "2")
    shutil.rmtree(f"{work}/first/plan", ignore_errors=True)
    second = _child("--measure", root, f"{work}/first", "--cpus", "2")
    row = {"where": where, "images": n, "tars": tars, "build_s": round(built, 1),
           "first": first, "second": second}  # fmt: skip
    if serial:
        row["serial"] = _child("--serial", root)
    return row


def _print_size(r: dict) -> None:
    f, s = r["first"], r["second"]
    plan_s = f["index_s"] + f["plan_s"]
    print(
        f"{r['where']:5} {r['images']:>9,} images {r['tars']:>5} tars | "
        f"index {f['index_s']:7.2f} s, plan {f['plan_s']:6.2f} s, summary {f['summary_s']:5.2f} s"
        f" | RSS {f['peak_rss_mb']} MB ({f['peak_rss_mb'] - f['fixed_rss_mb']:+} over "
        f"{f['fixed_rss_mb']} fixed) | read {f['tar_bytes_read'] / f['rows']:.0f} B/member | "
        f"2nd run: index {s['index_s']:.2f} s, {s['tar_bytes_read'] / r['tars']:.0f} B/tar, "
        f"{s['tars_scanned']} tars rescanned"
    )
    if "serial" in r:
        ser = r["serial"]
        print(
            f"      serial readers in the driver: {ser['serial_s']:.2f} s, peak RSS "
            f"{ser['peak_rss_mb']} MB ({ser['peak_rss_mb'] - ser['fixed_rss_mb']:+} over "
            f"{ser['fixed_rss_mb']} fixed) | ours / serial: time "
            f"{plan_s / max(ser['serial_s'], 1e-9):.2f}x, peak RSS "
            f"{f['peak_rss_mb'] / ser['peak_rss_mb']:.2f}x"
        )


def _growth(rows: list[dict]) -> None:
    for a, b in zip(rows, rows[1:], strict=False):
        fa, fb = a["first"], b["first"]
        x = b["images"] / a["images"]
        per10 = 1 / max(1e-9, math.log10(x))
        time_ratio = (fb["index_s"] + fb["plan_s"]) / max(fa["index_s"] + fa["plan_s"], 1e-9)
        rss_ratio = fb["peak_rss_mb"] / fa["peak_rss_mb"]
        print(
            f"      {a['images']:,} -> {b['images']:,} ({x:.0f}x images): time x{time_ratio:.2f}, "
            f"peak RSS x{rss_ratio:.2f} (per 10x: time x{time_ratio**per10:.2f}, "
            f"RSS x{rss_ratio**per10:.2f})"
        )


def bytes_ratio(where: str, root: str, work: str) -> None:
    """Bytes read to index tars of ImageNet-sized members (~110 KB each)."""
    from pipeline.data import layout
    from pipeline.io import storage

    tars = build(root, 4 * MEMBERS, payload=os.urandom(110_000))
    first = _child("--measure", root, work, "--cpus", "2", "--index-only")
    fs, path = storage.get_fs(storage.join(root, layout.CLS_TARS))
    size = fs.du(path)
    print(
        f"{where:5} {tars} tars of 650 x 110 KB: read {first['tar_bytes_read']:,} B of "
        f"~{size:,} B = {100 * first['tar_bytes_read'] / size:.2f}% (headers only)"
    )


def workers_scaling(root: str, work: str) -> None:
    """Indexing alone (no cache) with 1 and 2 workers."""
    times = {}
    for cpus in (1, 2):
        shutil.rmtree(work, ignore_errors=True)
        times[cpus] = _child("--measure", root, work, "--cpus", str(cpus), "--index-only")[
            "index_s"
        ]
    print(
        f"indexing alone, uncached: 1 worker {times[1]:.2f} s, 2 workers {times[2]:.2f} s: "
        f"{times[1] / times[2]:.2f}x"
    )


def cls_rate(tmp: str, size: str) -> None:
    """``lsda extract --split cls`` on the same images from class folders and from tars."""
    from pipeline.extract.stage import run_extract
    from pipeline.io.ray_env import start_local_ray
    from pipeline.toyworld.generate import generate
    from schemas.config import load_config, toyworld_config

    start_local_ray(log_to_driver=False)
    cfg = load_config("configs/toyworld.yaml").extract
    rates = {}
    for fmt in ("folders", "tars", "folders", "tars"):  # the first of each warms up
        data = f"{tmp}/cls-{fmt}"
        generate(data, toyworld_config(size, cls_format=fmt), progress=False)
        s = run_extract(data, f"{tmp}/cls-work-{fmt}-{len(rates)}", "cls", cfg, progress=False)
        rates[fmt] = s["done"] / s["seconds"]
    print(
        f"extract cls, {size} world ({s['done']} images, whole stage): folders "
        f"{rates['folders']:.0f} images/s, tars {rates['tars']:.0f} images/s: "
        f"tars / folders {rates['tars'] / rates['folders']:.2f}x"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1300000")
    p.add_argument("--s3-sizes", default="10000,100000")
    p.add_argument("--serial-max", type=int, default=100_000)
    p.add_argument("--measure", nargs=2, metavar=("ROOT", "WORK"))
    p.add_argument("--serial", metavar="ROOT")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--index-only", action="store_true")
    p.add_argument("--cls-rate", default="demo", help="world size for the folders/tars rate")
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.cpus, args.index_only)))
        return
    if args.serial:
        print(json.dumps(measure_serial(args.serial)))
        return
    tmp = tempfile.mkdtemp(prefix="lsda-scale-")
    rows = {"local": [], "s3": []}
    server = _s3_server() if args.s3_sizes else None
    try:
        for where, sizes in (("local", args.sizes), ("s3", args.s3_sizes)):
            for n in [int(s) for s in sizes.split(",") if s]:
                base = f"{tmp}/{n}" if where == "local" else f"s3://lsda-bench/{n}"
                row = run_size(where, f"{base}/data", f"{tmp}/work-{where}-{n}", n,
                               serial=n <= args.serial_max)  # fmt: skip
                rows[where].append(row)
                _print_size(row)
                sys.stdout.flush()
            _growth(rows[where])
        bytes_ratio("local", f"{tmp}/big/data", f"{tmp}/big/work")
        if server:
            bytes_ratio("s3", "s3://lsda-bench/big/data", f"{tmp}/big-s3/work")
        largest = max(int(s) for s in args.sizes.split(","))
        workers_scaling(f"{tmp}/{largest}/data", f"{tmp}/work-workers")
        if args.cls_rate:
            cls_rate(tmp, args.cls_rate)
    finally:
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

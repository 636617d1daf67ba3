"""``lsda submit`` against a real ``ray start --head`` (token authentication on), with the
dataset and work dir on a real S3 endpoint (moto) and S3 errors injected for a few images."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.data.det_reader import read_det_split
from pipeline.extract.stage import read_manifest
from pipeline.io import storage
from pipeline.io.ray_env import RAY_INTERNAL_LINE
from pipeline.toyworld.generate import generate
from schemas.config import toyworld_config
from schemas.metrics import validate_report
from tests.conftest import TEST_KEY_ID, TEST_SECRET, make_bucket, smoke_config
from tests.s3_faults import FaultyS3

ROOT = Path(__file__).resolve().parents[2]


def lsda(head, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, with the cluster's token in its environment."""
    cmd = [sys.executable, "-m", "jobs.cli", *args]
    return subprocess.run(
        cmd, env=head.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def submit(head, *command: str) -> subprocess.CompletedProcess:
    return lsda(head, "submit", "--address", head.address, "--", *command)


def _status_when(head, job_id: str, wanted: tuple, timeout_s: float = 300):
    """``lsda jobs status`` polled until the status is one of ``wanted`` (or time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = lsda(head, "jobs", "status", job_id, "--address", head.address)
        if json.loads(r.stdout)["status"] in wanted or time.monotonic() > deadline:
            return r
        time.sleep(1)


def test_a_failing_job_exits_non_zero_with_its_error(ray_head, tmp_path):
    t0 = time.time()
    r = submit(ray_head, "train-cls", "--data", str(tmp_path), "--work", str(tmp_path / "w"))
    print(f"failing job: {time.time() - t0:.1f} s")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("submitted lsda-train-cls-")
    assert "no classification shards" in r.stdout  # the job's own error, in its logs
    assert "FAILED" in r.stderr


def test_a_bad_command_is_refused_before_submitting(ray_head):
    r = submit(ray_head, "extract", "--split", "val2")
    assert r.returncode == 2 and "submitted" not in r.stdout
    assert "required: --data, --work" in r.stderr


@pytest.mark.slow  # the quick run as an S3 job
def test_jobs_status_and_logs(ray_head, s3_run):
    """Status and logs of a finished job: the faulty extraction's (its own job, waited on)."""
    job_id = s3_run["faulty"].stdout.splitlines()[0].removeprefix("submitted ")
    status = json.loads(_status_when(ray_head, job_id, ("SUCCEEDED", "FAILED", "STOPPED")).stdout)
    assert status["status"] == "SUCCEEDED", status
    logs = lsda(ray_head, "jobs", "logs", job_id, "--address", ray_head.address).stdout
    assert "6 images done, 2 quarantined" in logs


def test_a_stopped_job_reports_stopped(ray_head, tmp_path):
    r = lsda(ray_head, "submit", "--address", ray_head.address, "--no-wait", "--",
             "toyworld", "--out", str(tmp_path / "tw"), "--size", "demo")  # fmt: skip
    job_id = r.stdout.split()[-1]
    stop = lsda(ray_head, "jobs", "stop", job_id, "--address", ray_head.address)
    assert stop.returncode == 0 and "stop requested" in stop.stdout
    status = _status_when(ray_head, job_id, ("STOPPED",))
    assert json.loads(status.stdout)["status"] == "STOPPED" and status.returncode == 2


@pytest.fixture(scope="module")
def s3_run(ray_head, s3_server):
    """Extraction of val2 with S3 errors injected for two images (submitted job, through the
    faulty proxy), then the whole quick run (submitted job, straight to moto)."""
    bucket = make_bucket(s3_server)
    data, work, config = f"{bucket}/data", f"{bucket}/work", f"{bucket}/smoke.yaml"
    generate(data, toyworld_config("test", seed=3), workers=1, progress=False)  # tiny_world's
    storage.write_text(config, smoke_config())
    images = sorted(a.image_url for a in read_det_split(data, "val2").annotations)
    failing = {images[1], images[6]}  # one in each of the two 4-image shards
    t0 = time.time()
    with FaultyS3(s3_server, {u.removeprefix("s3:/") for u in failing}) as proxy:
        faulty = submit(ray_head, "extract", "--data", data, "--work", work, "--split", "val2",
                        "--config", config, "--s3-endpoint", proxy.endpoint,
                        "--max-bad", "0.5")  # 2 of 8: over the default 5%  # fmt: skip
        denied = dict(proxy.denied)
    t1 = time.time()
    before = _objects(work)
    rerun = submit(ray_head, "run", "--data", data, "--work", work, "--config", config,
                   "--quick", "--no-progress")  # fmt: skip
    print(f"faulty extract job: {t1 - t0:.1f} s; quick run job on S3: {time.time() - t1:.1f} s")
    return {"data": data, "work": work, "failing": failing, "denied": denied,
            "faulty": faulty, "before": before, "rerun": rerun}  # fmt: skip


def _objects(url: str) -> dict[str, tuple]:
    """Every object under url: (ETag, LastModified), to tell a rewrite from an untouched one."""
    fs, path = storage.get_fs(url)
    return {
        p: (i.get("ETag"), i.get("LastModified")) for p, i in fs.find(path, detail=True).items()
    }


def _manifest(work: str) -> dict[str, dict]:
    rows = read_manifest(f"{work}/extract/val2").to_pylist()
    return {r["image_url"]: r for r in rows}


@pytest.mark.slow  # the quick run as an S3 job
def test_s3_errors_quarantine_only_those_images(s3_run):
    assert s3_run["faulty"].returncode == 0, s3_run["faulty"].stdout + s3_run["faulty"].stderr
    assert sum(s3_run["denied"].values()) >= 2
    summary = json.loads(storage.read_text(f"{s3_run['work']}/extract/val2/summary.json"))
    assert summary["done"] == 8  # the re-run's summary: all done now
    assert "6 images done, 2 quarantined" in s3_run["faulty"].stdout


@pytest.mark.slow  # the quick run as an S3 job
def test_a_rerun_completes_them_without_redoing_the_rest(s3_run):
    rerun, work = s3_run["rerun"], s3_run["work"]
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
    assert "2 images retried" in rerun.stdout
    manifest = _manifest(work)
    assert len(manifest) == 8 and all(r["status"] == "done" for r in manifest.values())
    after = _objects(f"{work}/extract/val2")
    firsts = {p: v for p, v in s3_run["before"].items() if "/extract/val2/proposals/" in p}
    assert len(firsts) == 2 and all(after[p] == v for p, v in firsts.items())
    retried = [p for p in after if "-retry1.parquet" in p and "/proposals/" in p]
    assert len(retried) == 2
    assert sum(storage.read_table("s3://" + p).num_rows for p in retried) == 2


@pytest.mark.slow  # the quick run as an S3 job
def test_the_quick_run_on_s3_leaves_its_outputs(s3_run):
    work = s3_run["work"]
    assert s3_run["rerun"].returncode == 0
    report = json.loads(storage.read_text(f"{work}/report/metrics.json"))
    assert validate_report(report) == []
    assert storage.exists(f"{work}/report/index.html")
    assert storage.exists(f"{work}/models/detector-knn-5.pt")
    assert "knn-5" in s3_run["rerun"].stdout  # the ablation table, in the job's logs


# Ray's own lines, as they showed before: its C++ core, the local-instance banner, the token
# notice, the progress-bar notice, the cleaner's failed look-up, the raylet's start-up count.
# (A worker that crashes still shows: Ray retries its task, and the user should know.)
RAY_NOISE = (
    "core_worker.cc",
    "Started a local Ray instance",
    "Token authentication",
    "Progress bars disabled",
    "multiple active Ray instances",
    "PlacementGroupCleaner",
    "PreemptionWatcher",
    "PYTHON worker processes have been started",
)


@pytest.mark.slow  # the quick run as an S3 job
def test_the_jobs_console_holds_our_lines_only(s3_run):
    """The whole quick run's console (the job's logs, through the same filter as a terminal's
    `lsda run`): our stage lines, no line of Ray's own."""
    console = s3_run["rerun"].stdout.splitlines()
    print("lsda run --quick as a job, its console:", *console[:40], sep="\n")
    noise = [x for x in console if RAY_INTERNAL_LINE.match(x) or any(n in x for n in RAY_NOISE)]
    assert noise == [], "\n".join(noise[:20])
    assert "== extract cls" in console and any(x.startswith("report: ") for x in console)


@pytest.mark.slow  # the quick run as an S3 job
def test_credentials_never_appear_in_outputs_or_logs(s3_run, ray_head):
    secrets = (TEST_KEY_ID.encode(), TEST_SECRET.encode())
    outputs = storage.read_many(storage.find(s3_run["work"]))
    assert len(outputs) > 50
    leaked = [u for u, data in outputs.items() if any(s in data for s in secrets)]
    logs = [
        p
        for p in ray_head.logs.rglob("*")
        if p.is_file() and p.suffix in (".log", ".out", ".err", ".txt", ".json")
    ]
    assert len(logs) > 5
    leaked += [str(p) for p in logs if any(s in p.read_bytes() for s in secrets)]
    printed = s3_run["faulty"].stdout + s3_run["faulty"].stderr + s3_run["rerun"].stdout
    leaked += ["job output"] if TEST_KEY_ID in printed or TEST_SECRET in printed else []
    assert leaked == []


JOIN = "import ray; ray.init(address={!r}); print('joined', ray.cluster_resources()['CPU'])"


@pytest.mark.parametrize("token", [None, "wrong", "right"])
def test_the_cluster_refuses_a_client_without_its_token(ray_head, token, tmp_path):
    """Token authentication, proven: the job server and the GCS refuse a client without the
    cluster's token or with a wrong one, and accept the right one. (HOME elsewhere: a local
    Ray instance leaves its own token in ~/.ray/auth_token, which a client would send.)"""
    env = {k: v for k, v in ray_head.env.items() if k != "RAY_AUTH_TOKEN"}
    env["HOME"] = str(tmp_path)
    if token == "wrong":
        env["RAY_AUTH_TOKEN"] = "0" * 32
    elif token == "right":
        env["RAY_AUTH_TOKEN"] = ray_head.env["RAY_AUTH_TOKEN"]
    jobs = subprocess.run([sys.executable, "-m", "jobs.cli", "jobs", "list", "--address",
                           ray_head.address], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    join = subprocess.run([sys.executable, "-c", JOIN.format(ray_head.gcs)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if token == "right":
        assert jobs.returncode == 0, jobs.stderr[-2000:]
        assert join.returncode == 0 and "joined 2.0" in join.stdout, join.stderr[-2000:]
    else:
        assert jobs.returncode != 0 and "Token authentication is enabled" in jobs.stderr
        assert join.returncode != 0 and "joined" not in join.stdout
        assert "token" in join.stderr.lower() and "auth" in join.stderr.lower()

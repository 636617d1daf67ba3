"""The cluster manifests parse, name our image and entry point, ask for consistent resources,
and keep Ray's token authentication on; the code never turns it off either."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from jobs.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
IMAGE = "ghcr.io/lsda-ray/lsda-ray:0.1.0"


def _load(name: str) -> dict:
    return yaml.safe_load((INFRA / name).read_text())


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def _groups(cluster: dict) -> list[tuple[dict, dict]]:
    """(rayStartParams, container) of the head and of every worker group."""
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [(g["rayStartParams"], c) for g in groups for c in _containers(g["template"])]


def _assert_token_auth(container: dict) -> None:
    env = _env(container)
    assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "lsda-ray-token"


def test_raycluster_image_resources_and_auth():
    cluster = _load("kuberay/raycluster.yaml")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    assert cluster["spec"]["rayVersion"] == "2.60.0"
    for params, container in _groups(cluster):
        assert container["image"].startswith(IMAGE)
        _assert_token_auth(container)
        limits = container["resources"]["limits"]
        assert container["resources"]["requests"] == limits
        if params["num-cpus"] != "0":  # the head schedules no work
            assert params["num-cpus"] == limits["cpu"], container["name"]
        assert params.get("num-gpus", "0") == limits.get("nvidia.com/gpu", "0")
        if "num-gpus" in params:
            assert container["image"].endswith("-cuda")


def test_rayjob_runs_an_lsda_command_on_the_cluster():
    job = _load("kuberay/rayjob.yaml")
    assert job["kind"] == "RayJob"
    assert (
        job["spec"]["clusterSelector"]["ray.io/cluster"]
        == _load("kuberay/raycluster.yaml")["metadata"]["name"]
    )
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.cli"]
    args = build_parser().parse_args(argv[3:])
    assert args.stage == "run" and args.data.startswith("s3://")
    assert args.config.endswith("configs/imagenet7k.yaml")
    assert (ROOT / "configs" / Path(args.config).name).exists()
    (submitter,) = _containers(job["spec"]["submitterPodTemplate"])
    assert submitter["image"] == IMAGE
    _assert_token_auth(submitter)


def test_cluster_launcher_nodes_match_their_start_commands():
    cfg = _load("aws/cluster.yaml")
    assert cfg["docker"]["image"] == IMAGE
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    for name, node in types.items():
        assert node["node_config"]["IamInstanceProfile"]["Name"] == "lsda-ray", name
        if node["resources"].get("GPU"):
            assert node["docker"]["worker_image"] == IMAGE + "-cuda"
    assert sum(t.get("max_workers", 0) for t in types.values()) <= cfg["max_workers"]
    for command in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        if "ray start" in command:
            assert command.startswith("RAY_AUTH_MODE=token ")
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--num-cpus=0" in head and types["head"]["resources"]["CPU"] == 0
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard`'s tunnel


def test_dockerfile_builds_both_variants_and_drops_root():
    text = (INFRA / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in text and "cuda)" in text
    assert "RAY_AUTH_MODE=token" in text
    assert re.search(r"^USER ray$", text, re.M)
    for pinned in ("torch==2.14.1", "torchvision==0.29.1", "-c constraints.txt"):
        assert pinned in text
    for folder in ("pipeline", "jobs", "schemas", "configs"):
        assert f"COPY {folder} {folder}" in text


# Auth switched off, an AWS access key id, a 40-character secret key.
PATTERNS = [r"RAY_AUTH_MODE\W+disabled", r"AKIA[0-9A-Z]{16}", r"(?i)secret.{0,30}[A-Za-z0-9/+]{40}"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_nothing_we_ship_disables_auth_or_holds_keys(pattern):
    tracked = subprocess.run(
        ["git", "ls-files", "pipeline", "jobs", "schemas", "infra", "configs", "Makefile"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(tracked) > 20
    hits = [f for f in tracked if re.search(pattern, (ROOT / f).read_text(errors="ignore"))]
    assert hits == []


def _torch_loads(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
            yield node


def test_every_torch_load_refuses_code():
    calls = 0
    for path in [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "jobs").rglob("*.py")]:
        for call in _torch_loads(ast.parse(path.read_text())):
            calls += 1
            flags = {k.arg: getattr(k.value, "value", None) for k in call.keywords}
            assert flags.get("weights_only") is True, f"{path}:{call.lineno}"
    assert calls >= 3

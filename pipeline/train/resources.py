"""The CPUs of a training run, planned: each Ray Train worker's own, and its readers'.

Each training worker streams its shards through a Ray Data dataset of its own
(``pipeline/train/stream.py``). Left to Ray Data, concurrent datasets share the cluster through
one cluster-wide coordinator that grants CPUs first come, first served: on a small machine one
worker's readers could be granted none, wait for the other's to finish, and make Ray print
"Cluster resources are not enough to run any task ... may hang forever" (docs/notes.md). So
each worker reserves its readers' CPUs in a placement group of its own and points its Ray Data
context at it: Ray Data then budgets and schedules that worker's read tasks within the group,
and no worker's readers wait on another's.

The plan (docs/training.md, "CPUs"): a worker gets 1 CPU (its torch thread, or the host side
of its GPU), less when the cluster has fewer CPUs than workers plus one; its readers share what
is left, in whole CPUs from one CPU up, at most ``MAX_READER_CPUS`` each (a pass has at most
that many read tasks).
"""

from __future__ import annotations

import math
import uuid
import warnings
from dataclasses import dataclass

from pipeline.io.ray_env import consumer_cpus
from pipeline.train.rows import MAX_READ_TASKS, READ_TASK_CPUS

MIN_SHARE = 0.25  # of a CPU: the least a worker (as consumer_cpus), or its readers, can have
MAX_READER_CPUS = float(MAX_READ_TASKS)  # one CPU per read task of a pass
RESERVE_TIMEOUT_S = 600  # an autoscaling cluster may take minutes to add the nodes


@dataclass(frozen=True)
class TrainPlan:
    """Per worker: its own CPUs, its readers' (reserved beside it) and their object store."""

    workers: int
    worker_cpus: float
    reader_cpus: float
    reader_memory: float = 0.0  # bytes of object store for the read blocks (Ray Data's budget)

    @property
    def read_task_cpus(self) -> float:
        """One task of the whole share under a CPU, else a task per CPU. On 2 cores with 2
        workers, one task of 0.5 CPU each beat two of 0.25 (1,830-2,040 against 1,740-1,820
        images/s, demo world)."""
        return min(1.0, self.reader_cpus)

    def reader_bundles(self) -> list[dict[str, float]]:
        """A bundle per read task: pieces of at most a CPU fit in any node's leftover whole
        CPUs, wherever the workers were placed."""
        n = max(1, int(self.reader_cpus))
        return [{"CPU": self.read_task_cpus}] * n


def _floor(x: float) -> float:
    """Ray keeps resources to 1e-4; 1e-2 keeps sums of shares from exceeding the total."""
    return math.floor(x * 100) / 100


def plan_training(cluster_cpus: float, workers: int, object_store: float = 0.0) -> TrainPlan:
    """How ``workers`` training workers and their readers share ``cluster_cpus``, and half
    of the ``object_store`` (bytes). Refuses a plan that cannot fit, rather than a fit that
    waits forever for CPUs."""
    if workers < 1:
        raise ValueError(f"a training run needs at least one worker, not {workers}")
    if cluster_cpus < 2 * MIN_SHARE * workers:
        raise ValueError(
            f"{workers} training workers need {2 * MIN_SHARE * workers:g} CPUs ({MIN_SHARE:g} "
            f"each to train and {MIN_SHARE:g} for its readers); the cluster has "
            f"{cluster_cpus:g}: use at most {int(cluster_cpus / (2 * MIN_SHARE))} workers"
        )
    # the readers keep at least MIN_SHARE each, however few the CPUs
    worker = _floor(min(consumer_cpus(cluster_cpus, workers), cluster_cpus / workers - MIN_SHARE))
    readers = min(MAX_READER_CPUS, (cluster_cpus - worker * workers) / workers)
    readers = float(int(readers)) if readers >= 1 else _floor(readers)
    return TrainPlan(workers, worker, readers, object_store / 2 / workers)


def current_plan(workers: int) -> TrainPlan:
    import ray

    total = ray.cluster_resources()
    return plan_training(total.get("CPU", 0.0), workers, total.get("object_store_memory", 0.0))


def reserve_readers(plan: TrainPlan, name: str):
    """In a training worker: its readers' placement group, ready; the group called ``name``
    if it exists (the group of the worker this one replaces within a fit: Ray does not remove
    a group when the worker that made it dies), else a new one. ``remove_readers`` ends them."""
    import ray
    from ray.util.placement_group import get_placement_group, placement_group

    try:
        group = get_placement_group(name)
    except ValueError:  # none of that name
        group = placement_group(plan.reader_bundles(), strategy="PACK", name=name)
    if not ray.wait([group.ready()], timeout=RESERVE_TIMEOUT_S)[0]:
        raise RuntimeError(
            f"the cluster did not free {plan.reader_cpus:g} CPUs for a training worker's "
            f"readers in {RESERVE_TIMEOUT_S} s: is another job holding its CPUs?"
        )
    return group


def reader_group_names(plan: TrainPlan) -> list[str]:
    """A fresh name per worker for one fit's readers' groups (the driver's, then the rank's)."""
    fit = uuid.uuid4().hex[:12]
    return [f"lsda-readers-{fit}-{rank}" for rank in range(plan.workers)]


def remove_readers(names: list[str]) -> None:
    """The driver, after a fit: remove its workers' readers' groups (a job's groups also end
    with the job)."""
    from ray.util.placement_group import get_placement_group, remove_placement_group

    for name in names:
        try:
            remove_placement_group(get_placement_group(name))
        except ValueError:  # never made: its worker did not get that far
            pass


def read_in_reserved_cpus(plan: TrainPlan, name: str) -> None:
    """In a training worker: reserve its readers' CPUs, and have Ray Data budget and place
    this process's datasets there (Ray Data's placement-group path: its limits are the
    group's bundles, not a share of the cluster granted by its coordinator).

    Ray Data reads its object store budget from the bundle too, and a bundle without one
    gives it none: it then holds back each read until the last block is consumed (1,100
    against 1,800 images/s, demo world). Object store memory in the bundle itself is not an
    option: Ray 2.60's raylet aborts when such a group is removed (a failed check in
    ``LocalResourceManager::FreeTaskResourceInstances``). So the handle given to Ray Data
    carries the group's id (where Ray schedules the tasks) and a bundle description that
    adds the plan's object store (what Ray Data budgets with)."""
    import ray.data
    from ray.util.placement_group import PlacementGroup
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = reserve_readers(plan, name)
    ctx = ray.data.DataContext.get_current()
    share = plan.reader_memory / group.bundle_count
    budgeted = PlacementGroup(
        group.id, bundle_cache=[{**b, "object_store_memory": share} for b in group.bundle_specs]
    )
    strategy = PlacementGroupSchedulingStrategy(budgeted, placement_group_capture_child_tasks=False)
    with warnings.catch_warnings():
        # Ray 2.60 marks these deprecated (removal after January 2027) yet still reads them to
        # choose the placement-group path; Ray is pinned, and a newer one must be re-checked.
        warnings.simplefilter("ignore")
        ctx.scheduling_strategy = strategy
        ctx.scheduling_strategy_large_args = strategy
    ctx.set_config(READ_TASK_CPUS, plan.read_task_cpus)

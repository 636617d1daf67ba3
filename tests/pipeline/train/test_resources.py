"""The plan of a training run's CPUs: each worker's own and its readers'."""

import itertools

import pytest

from pipeline.train.resources import MAX_READER_CPUS, plan_training


@pytest.mark.parametrize(
    "cpus, workers, worker, readers, task",
    [
        (2, 2, 0.5, 0.5, 0.5),  # this machine, the toyworld config: one read task each
        (2, 1, 1.0, 1.0, 1.0),
        (16, 1, 1.0, MAX_READER_CPUS, 1.0),  # the lent GPU node: a read task per CPU
        (96, 8, 1.0, MAX_READER_CPUS, 1.0),  # an 8-GPU node
        (2, 3, 0.33, 0.33, 0.33),
        (3, 2, 1.0, 0.5, 0.5),
        (5, 2, 1.0, 1.0, 1.0),  # whole CPUs from one up: the half left is not reserved
    ],
)
def test_plans(cpus, workers, worker, readers, task):
    plan = plan_training(cpus, workers, object_store=8e9)
    assert (plan.worker_cpus, plan.reader_cpus, plan.read_task_cpus) == (worker, readers, task)
    assert plan.reader_memory == 8e9 / 2 / workers
    bundles = plan.reader_bundles()  # one per read task, none over a CPU
    assert bundles == [{"CPU": task}] * len(bundles) and len(bundles) * task == readers


def test_a_plan_never_asks_for_more_than_the_cluster_has():
    for cpus, workers in itertools.product((0.5, 1, 1.5, 2, 3, 7, 16, 100), range(1, 13)):
        if cpus < 0.5 * workers:
            continue
        plan = plan_training(cpus, workers)
        assert workers * (plan.worker_cpus + plan.reader_cpus) <= cpus + 1e-9
        assert min(plan.worker_cpus, plan.reader_cpus) >= 0.25
        assert 0 < plan.read_task_cpus <= plan.reader_cpus


def test_too_many_workers_are_refused_with_what_fits():
    with pytest.raises(ValueError, match="4 training workers need 2 CPUs.*at most 2 workers"):
        plan_training(1, 4)

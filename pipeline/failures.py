"""How a stage fails: one line for the console, never a half-finished result under a final name.

``StageFailed`` is what the CLI prints as one line (exit 1): a shard that met a bug, or a
stage whose inputs were too often bad. Data problems of single inputs never raise; they are
quarantined (``pipeline.extract.shard``).
"""

from __future__ import annotations

import os
import signal
import threading
import time

DEFAULT_MAX_BAD = 0.05  # the share of quarantined inputs above which a stage fails


class StageFailed(RuntimeError):
    """A stage stopped; its message is the one line a user reads."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (``lsda jobs stop``, Kubernetes, a scheduler): raised in the main
    thread wherever it waits, so that the work stops and the CLI exits 128 + the signal's
    number. A KeyboardInterrupt, so that Ray Data and Ray Train cancel as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame) -> None:
    # a second signal while stopping: the default action, at once
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Interrupted(signum)


_handling = False


def handle_stop_signals() -> None:
    """SIGINT and SIGTERM raise ``Interrupted`` (the CLI's main thread only)."""
    global _handling
    if threading.current_thread() is not threading.main_thread():
        return
    _handling = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupted)


def rearm_stop_signals() -> None:
    """After ``ray.init``, which sets its own SIGTERM handler (``sys.exit(15)``)."""
    if _handling:
        handle_stop_signals()


def failure_message(exc: BaseException, cls: type[BaseException]) -> str | None:
    """The message of the ``cls`` error that caused ``exc``, or None. Ray Data re-raises a
    task's error as its own type with the chain flattened into the text (``RayTaskError(
    UserCodeException)``), so the chain is searched first, then the text's lines."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, cls):
            return str(e)
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    marker = f"{cls.__name__}: "
    for line in str(exc).splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip()
    return None


def check_bad_share(what: str, bad: int, total: int, max_bad: float, where: str) -> None:
    """Fail when more than ``max_bad`` of ``total`` inputs were quarantined (all of them,
    whatever the limit): a systematic failure, not a few dirty files."""
    if total and (bad > max_bad * total or bad == total):
        raise StageFailed(
            f"{what}: {bad} of {total} inputs quarantined ({100 * bad / total:.1f}% > limit "
            f"{100 * max_bad:g}%, --max-bad); their reasons are in {where}"
        )


def held_for_a_test(shard: int) -> None:
    """Interrupt tests: with ``LSDA_TEST_HOLD_FROM_SHARD=N`` shards N and later wait to be
    stopped, so that a signal meets a run with exactly N shards done, however fast they are."""
    hold = os.environ.get("LSDA_TEST_HOLD_FROM_SHARD")
    if hold and shard >= int(hold):
        time.sleep(600)

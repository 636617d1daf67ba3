"""How a stage fails: one line for the console, never a half-finished result under a final name.

``StageFailed`` is what the CLI prints as one line (exit 1): a shard that met a bug, or a
stage whose inputs were too often bad. Data problems of single inputs never raise; they are
quarantined (``pipeline.extract.shard``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

DEFAULT_MAX_BAD = 0.05  # the share of quarantined inputs above which a stage fails
RETRYABLE = "read-error"  # the quarantine reason that a re-run tries again


class StageFailed(RuntimeError):
    """A stage stopped; its message is the one line a user reads."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (``lsda jobs stop``, Kubernetes, a scheduler): raised in the main
    thread wherever it waits, so that the work stops and the CLI exits 128 + the signal's
    number. A KeyboardInterrupt, so that Ray Data and Ray Train cancel as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_last_signal: int | None = None


def _raise_interrupted(signum: int, frame) -> None:
    global _last_signal
    _last_signal = signum
    # a second signal while stopping: the default action, at once
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Interrupted(signum)


def stop_signal(exc: KeyboardInterrupt) -> int:
    """The signal behind ``exc``: Ray Train re-raises a plain KeyboardInterrupt of its own
    when a fit is interrupted, so the signal is remembered apart."""
    return getattr(exc, "signum", None) or _last_signal or signal.SIGINT


_handling = False


@contextlib.contextmanager
def stop_signals():
    """While inside: SIGINT and SIGTERM raise ``Interrupted`` (in the main thread only; the
    previous handlers are back afterwards, for a caller that goes on, such as a test)."""
    global _handling
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _handling = True
    _arm()
    try:
        yield
    finally:
        _handling = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _arm() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupted)


def rearm_stop_signals() -> None:
    """After ``ray.init``, which sets its own SIGTERM handler (``sys.exit(15)``)."""
    if _handling and threading.current_thread() is threading.main_thread():
        _arm()


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


def quarantine_reason(exc: Exception) -> str | None:
    """Why an input is quarantined for ``exc``: ``<kind>: <message>`` for a finding about the
    input (corrupt, truncated, wrong size, ...), ``read-error: ...`` for a storage error (the
    next run tries again); None for anything else, a bug, which must fail its stage."""
    from pipeline.io.images import ImageError
    from pipeline.io.storage import is_io_error
    from schemas.records import DataError

    if isinstance(exc, ImageError):
        return f"{exc.kind}: {exc.message}"
    if isinstance(exc, DataError):
        return f"{exc.problem.kind}: {exc.problem.message}"
    if is_io_error(exc):
        return f"{RETRYABLE}: {type(exc).__name__}: {exc}"
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

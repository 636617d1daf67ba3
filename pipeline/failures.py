"""How a stage fails: one line for the console, never a half-finished result under a final name.

``StageFailed`` is what the CLI prints as one line (exit 1): a shard that met a bug, or a
stage whose inputs were too often bad. Data problems of single inputs never raise; they are
quarantined (``pipeline.extract.shard``).
"""

from __future__ import annotations

DEFAULT_MAX_BAD = 0.05  # the share of quarantined inputs above which a stage fails


class StageFailed(RuntimeError):
    """A stage stopped; its message is the one line a user reads."""


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

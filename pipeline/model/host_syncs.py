"""Counting the places where a GPU run would make the host wait for the device, on any device;
and the two helpers our code moves host data with (``from_host``, ``on_device``).

A training step or the scoring of an image runs at the GPU's speed only if the host can queue
its kernels ahead: every read-back (``item``, ``tolist``, ``cpu``, ``nonzero``, a boolean mask
as an index) and every copy from pageable host memory makes the host wait for the device to
catch up. On a CPU nothing waits, so ``HostSyncCounter`` counts the calls that would: run the
code under it on the CPU (tests, the GPU check's rehearsal) and the count is what the GPU pays.

What it counts, by the name it files it under:
- ``read:<op>``: a value brought back to the host (``item``, ``tolist``, ``cpu``, ``numpy``,
  ``__bool__``/``__int__``/``__float__``), or a result whose size depends on values
  (``nonzero``, ``masked_select``, ``unique``, indexing or assigning with a boolean mask);
- ``copy:<op>``: a host tensor moved to a device named in the call (``to``, ``cuda``), or a
  tensor made from host data on a named device (``torch.tensor``/``as_tensor`` with
  ``device=``). On the CPU the named device is the CPU itself, so any such call counts: a
  step whose inputs were put on the device before it makes none. A copy with
  ``non_blocking=True`` is not counted: ours go through ``on_device``, which pins the host
  memory first on a GPU (from pageable memory the host would wait all the same).

A read of a tensor that an earlier counted call brought to the host (``cpu()`` then
``numpy()``) is not counted again.
"""

from __future__ import annotations

import warnings
import weakref
from collections import Counter

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

_READS = {
    torch.Tensor.item: "item",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__int__: "int",
    torch.Tensor.__float__: "float",
    torch.Tensor.nonzero: "nonzero",
    torch.nonzero: "nonzero",
    torch.Tensor.masked_select: "masked_select",
    torch.masked_select: "masked_select",
    torch.unique: "unique",
    torch.Tensor.unique: "unique",
}
_INDEXING = {
    torch.Tensor.__getitem__: "getitem",
    torch.Tensor.__setitem__: "setitem",
    torch.Tensor.index_put_: "index_put",
    torch.Tensor.index_put: "index_put",
}
_CREATE = {torch.tensor: "tensor", torch.as_tensor: "as_tensor"}


def _names_device(args, kwargs) -> bool:
    if "device" in kwargs:
        return True
    return any(isinstance(a, torch.device) or (isinstance(a, str) and a) for a in args)


def _in(t, tensors: dict[int, weakref.ref]) -> bool:
    ref = tensors.get(id(t))
    return ref is not None and ref() is t


def _bool_index(index) -> bool:
    items = index if isinstance(index, tuple | list) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def from_host(a: np.ndarray) -> torch.Tensor:
    """A tensor over ``a``'s memory, only ever read: a read-only array (PIL's decoded images
    are) needs no copy, and torch's warning about it is not ours to show."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without the host waiting: host memory is pinned first for a GPU
    (only host memory can be; a tensor already on a device is moved, or kept, as it is)."""
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class HostSyncCounter(TorchFunctionMode):
    """``with HostSyncCounter() as c: ...``; then ``c.total`` and ``c.counts`` by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()
        self._on_host: dict[int, weakref.ref] = {}  # by id: tensors compare by value

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = self._kind(func, args, kwargs)
        if kind and kind.startswith("read:") and args and _in(args[0], self._on_host):
            kind = None  # already brought to the host
        if kind:
            self.counts[kind] += 1
        out = func(*args, **kwargs)
        if kind in ("read:cpu", "read:numpy") or func is torch.from_numpy:
            if isinstance(out, torch.Tensor):
                self._on_host[id(out)] = weakref.ref(out)
        return out

    @staticmethod
    def _kind(func, args, kwargs) -> str | None:
        if func in _READS:
            return f"read:{_READS[func]}"
        if func in _INDEXING and len(args) > 1 and _bool_index(args[1]):
            return f"read:{_INDEXING[func]}-mask"
        if kwargs.get("non_blocking"):
            return None
        if func in _CREATE and "device" in kwargs:
            return f"copy:{_CREATE[func]}"
        if func in (torch.Tensor.to, torch.Tensor.cuda) and args:
            source = args[0]
            named = func is torch.Tensor.cuda or _names_device(args[1:], kwargs)
            if isinstance(source, torch.Tensor) and source.device.type == "cpu" and named:
                return f"copy:{func.__name__}"
        return None

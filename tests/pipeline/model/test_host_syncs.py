"""The host-sync counter sees what would make a GPU run wait, on the CPU."""

import torch

from pipeline.model.host_syncs import HostSyncCounter


def test_reads_and_host_copies_are_counted_and_device_work_is_not():
    x = torch.arange(6.0)
    with HostSyncCounter() as c:
        y = (x * 2).softmax(0)[torch.tensor([0, 2])]  # device work, an index tensor
        y.sum().item()
        x.tolist()
        x[x > 2]  # a boolean mask: its result's size depends on values
        x[x > 4] = 0
        torch.nonzero(x)
        x.to("cpu")  # a named device: a copy from pageable host memory on a GPU run
        x.to("cpu", non_blocking=True)  # ours are pinned first (on_device): no wait
        x.cpu().numpy()  # one read: the second is of a tensor already on the host
        torch.tensor([1, 2], device="cpu")
        x.to(torch.float64)  # a dtype only: not a copy between host and device
    assert c.counts == {
        "read:item": 1,
        "read:tolist": 1,
        "read:getitem-mask": 1,
        "read:setitem-mask": 1,
        "read:nonzero": 1,
        "read:cpu": 1,
        "copy:to": 1,
        "copy:tensor": 1,
    }
    assert c.total == 8

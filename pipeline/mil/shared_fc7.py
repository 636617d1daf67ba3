"""The fc7 option of ``lsda mil`` (``[mil] fc7: true``): fc7 refitted too, after the rows.

fc7 is shared by every category, so it cannot be refined one category at a time. Once every
held-out row is refined, fc7 and the output rows of set B, the refined categories and the
background are refitted together with the detection fine-tune's softmax loss. Layers 1-6 stay
frozen, so the fit runs on fc6's activations, computed once, of:

- **set B's windows.** DET train's stored training windows, labelled at extraction with set
  B's boxes: set B's objects and background. This is a bounded, evenly spaced sample of its
  parts, ``fc7_windows`` in all.
- **the held-out categories' windows.** Each refined category's chosen window of each bag in
  the last round, labelled with that category. The actors compute these (``stage.py``).

Minibatches are the fine-tune's (``fg_per_batch`` foreground + ``bg_per_batch`` background),
with Adam at its rate and dropout as in the network, for ``fc7_steps`` steps, seeded.
val1 is never read. Its windows hold set A's objects as background, and its set-A boxes are
the development slice the option is judged on.

Layers 1-6 stay bit for bit as they were. Set B's rows and the background row move with fc7, so
the trained categories' mAP can move too: docs/mil.md measures it. Rows outside the fit keep
their weights but read the new fc7. These are held-back categories and categories without bags.

Scale: a held-out category adds at most ``images_per_category`` activations. At ImageNet's
7,404 leaves, 50 images and AlexNet's 4,096-wide fc6, that is 6 GB in one task.
That is why the option is off by default.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.sampling import evenly_spaced
from pipeline.io import storage
from pipeline.model.nets import CategoryMap, LSDANet
from pipeline.model.preprocess import fc7_features
from pipeline.train.data import decode_pixels
from pipeline.workdir import WorkDir
from schemas.config import MilConfig

BATCH = 1024  # windows per forward pass
SPLIT = "det-train"
MAX_PARTS = 64  # parts read for the sample: spread over a class-sorted split
FG, BG = 32, 96  # windows per minibatch: the detection fine-tune's (TOYWORLD.md's recipe)
SEED = 0


def fc6_activations(model: LSDANet, windows: np.ndarray, mean) -> torch.Tensor:
    """relu(fc6) of uint8 (N, S, S, 3) windows, centre crop, eval mode: fc7's input."""
    with torch.no_grad():  # not inference_mode: the refit trains on these
        return fc7_features(model, windows, mean, batch=BATCH, layer="fc6")


def set_b_windows(work: str, budget: int) -> tuple[np.ndarray, list[str]]:
    """Up to ``budget`` of DET train's stored windows (pixels, labels: a set-B wnid or
    background), the first ones of evenly spaced parts."""
    urls = WorkDir(work).extract_parts(SPLIT, "windows")
    if not urls:
        raise FileNotFoundError(f"no windows under {WorkDir(work).extract(SPLIT)}")
    parts = evenly_spaced(urls, MAX_PARTS)
    per_part = max(1, -(-budget // len(parts)))
    pixels, labels = [], []
    for url in parts:
        t = storage.read_table(url, ["label", "size", "encoding", "pixels"]).to_pydict()
        n = min(per_part, len(t["label"]))
        pixels.append(decode_pixels(t["pixels"][:n], t["size"][:n], t["encoding"][:n]))
        labels += t["label"][:n]
    return np.concatenate(pixels), labels


def refit_fc7(
    model: LSDANet,
    x: torch.Tensor,
    y: torch.Tensor,
    cols: list[int],
    bg_row: int,
    steps: int,
    lr: float,
    fg: int,
    bg: int,
    seed: int,
) -> list[float]:
    """Train ``model.fc7`` and ``model.output`` in place on fc6 activations ``x`` with output
    row labels ``y``; the softmax covers the rows ``cols`` (background last). Returns the loss
    of every step."""
    col_of_row = torch.full((model.output.out_features,), -1, dtype=torch.long)
    col_of_row[torch.as_tensor(cols)] = torch.arange(len(cols))
    fg_idx, bg_idx = (y != bg_row).nonzero()[:, 0], (y == bg_row).nonzero()[:, 0]
    if not len(fg_idx) or not len(bg_idx):
        raise ValueError("the fc7 refit needs foreground and background windows")
    params = [*model.fc7.parameters(), *model.output.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the draws and dropout's masks, without touching the caller's
        model.train()
        for _ in range(steps):
            i = torch.cat(
                [
                    fg_idx[torch.randint(len(fg_idx), (fg,))],
                    bg_idx[torch.randint(len(bg_idx), (bg,))],
                ]
            )
            h = model.dropout(torch.relu(model.fc7(model.dropout(x[i]))))
            loss = F.cross_entropy(model.output(h)[:, cols], col_of_row[y[i]])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    model.eval()
    return losses


def joint_inputs(
    model: LSDANet,
    categories: CategoryMap,
    mean,
    work: str,
    budget: int,
    positives: dict[str, torch.Tensor],
    cols: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """fc6 activations and row labels: DET train's sample, then each category's positives.
    Windows of rows outside ``cols`` (held-back categories) are left out, as the fine-tune
    leaves them out."""
    pixels, labels = set_b_windows(work, budget)
    rows = torch.tensor([categories.row_of(label) for label in labels], dtype=torch.long)
    keep = torch.isin(rows, torch.as_tensor(cols))
    x, y = [fc6_activations(model, pixels[keep.numpy()], mean)], [rows[keep]]
    for wnid, acts in positives.items():
        x.append(acts.float())
        y.append(torch.full((len(acts),), categories.rows([wnid])[0], dtype=torch.long))
    return torch.cat(x), torch.cat(y)


def read_positives(parts: list[str]) -> dict[str, torch.Tensor]:
    """Each refined category's chosen windows' activations, from ``lsda mil``'s row parts."""
    out = {}
    for url in parts:
        t = storage.read_table(url, ["wnid", "positives"]).to_pydict()
        for wnid, acts in zip(t["wnid"], t["positives"], strict=True):
            if acts:
                out[wnid] = torch.tensor(acts, dtype=torch.float32)
    return out


def refit_model(
    model: LSDANet,
    categories: CategoryMap,
    mean,
    work: str,
    cfg: MilConfig,
    parts: list[str],
    trained: list[str],
) -> tuple[LSDANet, dict]:
    """The whole option on a refined detector (a Ray task's body): returns the model with fc7
    and the rows of set B (``trained``), of the refined categories (the ``parts`` of
    ``lsda mil``'s rows, with their positives) and of background refitted, and what the fit
    saw."""
    torch.set_num_threads(1)  # one CPU, as Ray gave it
    positives = read_positives(parts)
    bg_row = categories.background_row
    cols = sorted(categories.rows([*trained, *positives])) + [bg_row]
    x, y = joint_inputs(model, categories, mean, work, cfg.fc7_windows, positives, cols)
    losses = refit_fc7(model, x, y, cols, bg_row, cfg.fc7_steps, cfg.fc7_lr, FG, BG, SEED)
    seen = {
        "windows": len(y),
        "background": int((y == bg_row).sum()),
        "positives": sum(len(p) for p in positives.values()),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else [],
    }
    return model, seen

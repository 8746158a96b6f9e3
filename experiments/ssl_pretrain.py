"""Warm-start a backbone on unlabelled phantom images with a self-supervised objective.

The testbed search's last lever (docs/lab/phantom-testbed-search.md, rule 5): users start from
ImageNet weights; here a backbone is pretrained on many unlabelled phantom
images with SimCLR (Chen et al., ICML 2020: two random views of each image,
their projections pulled together and pushed from every other image's by the
NT-Xent loss) and saved as a local weights file, which a recipe names as
``backbone.params.weights``. Labels, masks and annotators are never read.

The images come from the recipe's own phantom (``--recipe``, the testbed's
``recipes/table1/_base.yaml`` by default) drawn with another data seed
(``--data-seed``, 1000 by default: no search, confirmation or grid draw) and,
by default, from the phantom's ``val`` split, where the spurious marker is
independent of the lesion: an unlabelled pool carries no label for the marker
to be correlated with.

    python experiments/ssl_pretrain.py --out weights/phantom_simclr.safetensors
    esx run recipes/table1/oracle.yaml \\
        --set backbone.params.weights=weights/phantom_simclr.safetensors

Writes the weights (timm's names, no classifier: timm re-initialises the head
for the recipe's classes) and, beside them, ``<out>.json`` with the settings,
the phantom's parameters and the loss curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.progress import Progress  # noqa: E402

from esx.errors import EsxError  # noqa: E402
from esx.interfaces import BuildContext  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import Recipe, load_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


SIZES = {"train": "n_train", "val": "n_val", "test": "n_test"}


def pool_recipe(recipe: Path, n: int, data_seed: int, split: str) -> Recipe:
    """The recipe with its phantom redrawn from ``data_seed`` and ``n`` images in ``split``."""
    if split not in SIZES:
        raise EsxError(f"--split {split!r}: choose one of {', '.join(SIZES)}")
    rec = load_recipe(
        recipe, registry(), [f"data.params.seed={data_seed}", f"data.params.{SIZES[split]}={n}"]
    )
    if rec.data.name != "phantom":
        raise EsxError(f"{recipe}: data is {rec.data.name!r}; this script draws the phantom")
    return rec


def unlabelled_images(rec: Recipe, split: str) -> torch.Tensor:
    """``(n, C, H, W)``: every image of the recipe's ``split`` (labels and masks unread)."""
    data = rec.data.build(BuildContext(seed=rec.seed)).split(split)
    return torch.stack([data[i].image for i in range(len(data))])


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random view of each image: a crop of 50-100% of its side at a random place and
    right angle, mirrored half the time (one affine resampling), then a random contrast,
    brightness and Gaussian noise. Every draw comes from ``g``."""
    b = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=g)

    scale = u(0.5, 1.0)
    turn = torch.randint(0, 4, (b,), generator=g).float() * (math.pi / 2)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    shift = (1 - scale)[:, None] * u(-1.0, 1.0, 2)  # the crop stays inside the image
    cos, sin = torch.cos(turn) * scale, torch.sin(turn) * scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], 1),
            torch.stack([sin * flip, cos, shift[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    v = v * u(0.7, 1.3, 1, 1, 1) + u(-0.3, 0.3, 1, 1, 1)
    return v + u(0.0, 0.2, 1, 1, 1) * torch.randn(v.shape, generator=g)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the other 2B - 1 views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(logits, partner)


def pretrain(
    images: torch.Tensor,
    arch: str = "resnet18",
    steps: int = 600,
    batch: int = 64,
    lr: float = 1e-3,
    temperature: float = 0.2,
    seed: int = 0,
    output_stride: int | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The backbone's state dict (timm's names, without classifier) and the loss per step."""
    import timm

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    kwargs = {} if output_stride is None else {"output_stride": output_stride}
    net = timm.create_model(arch, num_classes=0, in_chans=images.shape[1], **kwargs)
    width = net.num_features
    head = torch.nn.Sequential(
        torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 128)
    )
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-6)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    batch = min(batch, len(images))
    losses: list[float] = []
    task = progress.add_task("SimCLR steps", total=steps) if progress else None
    net.train()
    for _ in range(steps):
        pick = torch.randperm(len(images), generator=g)[:batch]
        v1, v2 = augment(images[pick], g), augment(images[pick], g)
        loss = nt_xent(head(net(v1)), head(net(v2)), temperature)
        if not torch.isfinite(loss):
            raise EsxError(f"the SimCLR loss became {loss.item()} at step {len(losses) + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress.update(task, advance=1, description=f"SimCLR steps, loss {loss:.3f}")
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    return state, losses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the weights file (.safetensors)")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "table1" / "_base.yaml")
    ap.add_argument("--images", type=int, default=4000, help="unlabelled images in the pool")
    ap.add_argument("--data-seed", type=int, default=1000)
    ap.add_argument("--split", default="val", help="the phantom split the pool is drawn as")
    ap.add_argument("--arch", default=None, help="timm model; default: the recipe's")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64, help="images per step (two views each)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--output-stride",
        type=int,
        default=None,
        help="as the backbone's (the weights are the same)",
    )
    a = ap.parse_args(argv)
    if a.out.suffix != ".safetensors":
        sys.exit(f"--out {a.out}: give a .safetensors file (esx loads weights from one)")
    if a.images < 2 or a.batch < 2 or a.steps < 1:
        sys.exit("--images and --batch must be at least 2, --steps at least 1")
    try:
        start = time.time()
        rec = pool_recipe(a.recipe, a.images, a.data_seed, a.split)
        images = unlabelled_images(rec, a.split)
        arch = a.arch or rec.backbone.params.arch
        with Progress() as progress:
            state, losses = pretrain(
                images, arch, a.steps, a.batch, a.lr, a.temperature, a.seed,
                a.output_stride, progress,
            )  # fmt: skip
    except EsxError as err:
        sys.exit(str(err))
    from safetensors.torch import save_file

    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(a.out))
    every = max(1, len(losses) // 50)
    info = {
        "objective": "SimCLR (NT-Xent)",
        "arch": arch,
        "recipe": str(a.recipe),
        "phantom": {"data_seed": a.data_seed, "split": a.split, "images": a.images},
        "steps": a.steps,
        "batch": a.batch,
        "lr": a.lr,
        "temperature": a.temperature,
        "seed": a.seed,
        "seconds": round(time.time() - start, 1),
        "loss_every": every,
        "loss": [round(sum(losses[i : i + every]) / len(losses[i : i + every]), 4)
                 for i in range(0, len(losses), every)],
    }  # fmt: skip
    Path(f"{a.out}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{a.out}: {arch}, {a.steps} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

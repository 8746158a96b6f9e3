"""Cost of an esx RRR step on Decoy-MNIST against a plain PyTorch RRR step of the same model.

Both steps run in one process on the same batch of the recipe's training split, each
with its own copy of the same initial weights and its own Adam. The plain step is
RRR written out by hand (Ross et al., 2017): cross-entropy plus λ times the squared
input gradient of the summed log-probabilities on the annotation's wrong-reason
pixels, summed over pixels and averaged over images. Warm-up steps first; then the
two alternate, so machine noise hits both alike; the medians and their ratio are
printed. The two losses are checked equal on the first step, so the ratio compares
the same computation.

    python benchmarks/decoy_step.py                       # Ross et al.'s MLP (the table's)
    python benchmarks/decoy_step.py --recipe recipes/decoy_mnist/cnn_rrr_oracle.yaml
    python benchmarks/decoy_step.py --device cuda --json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from esx.data import collate  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def plain_step(model, opt, image, label, allowed, lam: float) -> torch.Tensor:
    """One RRR step in plain PyTorch: the reference the esx step is timed against."""
    image = image.detach().requires_grad_(True)
    logits = model(image)
    logp = logits.log_softmax(1)
    (grad,) = torch.autograd.grad(logp.sum(), image, create_graph=True)
    penalty = (grad.pow(2).sum(1) * (1 - allowed)).sum(dim=(-2, -1)).mean()
    loss = F.cross_entropy(logits, label) + lam * penalty
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="recipes/decoy_mnist/rrr_oracle.yaml")
    ap.add_argument("--batch", type=int, help="batch size (default: the recipe's)")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    sets = [f"device={args.device}", "train.precision=fp32", "data.params.n_val=10"]
    sets += ["data.params.n_test=10", *([f"train.batch_size={args.batch}"] if args.batch else [])]
    recipe = load_recipe(ROOT / args.recipe, registry(), sets)
    trainer = Trainer(recipe, Path("/nonexistent-not-written"), recipe_source=args.recipe)
    device, t = trainer.rt.device, recipe.train
    split = trainer.c.dataset.split("train")
    batch = collate([split[i] for i in range(t.batch_size)]).to(device)

    model = copy.deepcopy(trainer.c.backbone)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    first_esx = trainer.step(batch)
    first_plain = plain_step(model, opt, batch.image, batch.label, batch.masks[:, 0], t.lambda_exp)
    esx_total = first_esx["pred"] + t.lambda_exp * first_esx.get("exp", 0.0)
    if abs(esx_total - float(first_plain)) > 1e-4 * max(1.0, abs(esx_total)):
        raise SystemExit(f"the two steps differ: esx loss {esx_total}, plain {float(first_plain)}")

    times: dict[str, list[float]] = {"esx": [], "plain": []}
    steps = {
        "esx": lambda: trainer.step(batch),
        "plain": lambda: plain_step(
            model, opt, batch.image, batch.label, batch.masks[:, 0], t.lambda_exp
        ),
    }
    for k in range(args.warmup + args.repeats):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            if k >= args.warmup:
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "recipe": args.recipe,
        "backbone": recipe.backbone.name,
        "device": str(device),
        "batch": t.batch_size,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "median_ms": {k: round(1000 * v, 3) for k, v in med.items()},
        "ratio_esx_to_plain": round(med["esx"] / med["plain"], 3),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{args.recipe} ({recipe.backbone.name}, batch {t.batch_size}, {device}, "
            f"{out['threads']} threads): esx RRR step {out['median_ms']['esx']:.2f} ms, "
            f"plain PyTorch RRR step {out['median_ms']['plain']:.2f} ms, "
            f"ratio {out['ratio_esx_to_plain']:.3f} (median of {args.repeats})"
        )
    return out


if __name__ == "__main__":
    main()

"""Two gloo processes on the CPU train exactly like one process averaging the same two shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, DistributedSampler

from esx.data import collate
from esx.plugins import registry
from esx.recipe import validate_recipe
from esx.trainer import Trainer

RECIPE = {
    "version": 1,
    "seed": 3,
    "data": {
        "name": "phantom",
        "params": {"image_size": 32, "n_train": 16, "n_val": 8, "n_test": 8},
    },
    "backbone": {"name": "timm", "params": {"arch": "resnet18"}},
    "explainer": {"name": "gradcam"},
    "aggregator": {"name": "consensus"},
    "loss": {"name": "gradia"},
    "train": {
        "epochs": 2,
        "batch_size": 4,
        "lambda_exp": 1.0,
        "precision": "fp32",
        "keep_last_checkpoint": True,  # the test reads the last epoch's weights
    },
    "eval": {"overlays": 0},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        HF_HUB_OFFLINE="1",
    )
    torch.set_num_threads(1)
    trainer = Trainer(validate_recipe(RECIPE, registry()), Path(out))
    first: dict[str, torch.Tensor] = {}
    step = trainer.step

    def recording_step(batch):
        logs = step(batch)
        if not first:  # the averaged gradients of the first step
            first.update(
                {
                    n: p.grad.detach().clone()
                    for n, p in trainer.module.named_parameters()
                    if p.grad is not None
                }
            )
        return logs

    trainer.step = recording_step
    trainer.run()
    save_file(first, str(Path(out) / f"grads{rank}.safetensors"))
    torch.distributed.destroy_process_group()


def _reference(out: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One process, the same two shards per step as DDP's samplers, gradients averaged.

    Single-threaded like the workers, so that the convolutions sum in the same order.
    """
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(key, None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference_steps(out)
    finally:
        torch.set_num_threads(threads)


def _reference_steps(out: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    trainer = Trainer(validate_recipe(RECIPE, registry()), out)
    t, split = trainer.recipe.train, trainer.c.dataset.split("train")
    samplers = [
        DistributedSampler(split, num_replicas=2, rank=r, shuffle=True, seed=trainer.recipe.seed)
        for r in (0, 1)
    ]
    weights = {"pred": 1.0, "exp": t.lambda_exp, "gen": t.lambda_gen}
    first: dict[str, torch.Tensor] = {}
    for epoch in range(1, t.epochs + 1):
        for s in samplers:
            s.set_epoch(epoch)
        loaders = [
            DataLoader(split, batch_size=t.batch_size // 2, sampler=s, collate_fn=collate)
            for s in samplers
        ]
        for shards in zip(*loaders, strict=True):
            trainer.module.train()
            trainer.opt.zero_grad(set_to_none=True)
            for batch in shards:
                terms, _ = trainer.module(batch)
                (sum(weights[k] * v for k, v in terms.items()) / 2).backward()
            if not first:
                first = {
                    n: p.grad.detach().clone()
                    for n, p in trainer.module.named_parameters()
                    if p.grad is not None
                }
            trainer.opt.step()
    params = {n: p.detach().clone() for n, p in trainer.module.named_parameters()}
    return first, params


def test_two_gloo_processes_equal_one_process_on_the_same_shards(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ref_grads, ref_params = _reference(tmp_path / "ref")
    grads = [load_file(str(out / f"grads{r}.safetensors")) for r in (0, 1)]
    assert set(grads[0]) == set(ref_grads) and len(ref_grads) > 10
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[0][name], g, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=0, atol=0, msg=name)
    saved = load_file(str(out / "last.safetensors"))
    for name, p in ref_params.items():
        torch.testing.assert_close(saved[f"model.{name}"], p, rtol=1e-4, atol=1e-5, msg=name)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["processes"] == 2
    # Sharded evaluation gathers every test image once, in the split's order.
    ids = [line.split(",")[0] for line in (out / "predictions.csv").read_text().splitlines()[1:]]
    assert ids == [str(i) for i in range(8)]


@pytest.mark.parametrize("nproc", [2])
def test_torchrun_cli(tmp_path, nproc):
    recipe = tmp_path / "r.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump({**RECIPE, "train": {**RECIPE["train"], "epochs": 1}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(_free_port()),
            "-m",
            "esx",
            "run",
            str(recipe),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("test results") == 1  # only the main process prints
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["run"]["processes"] == 2

"""The esx commands keep freed memory for reuse (esx.runtime.reuse_freed_memory): only
where the user has not chosen otherwise, it stops the kernel re-mapping freed tensors'
pages, and a run ends bit for bit as it does with malloc as is."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import yaml

from esx.errors import EsxError
from esx.runtime import allocator_choice

from conftest import ROOT

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ESX_ALLOCATOR"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_the_choice_follows_the_environment():
    default = "reuse" if GLIBC else "system"
    assert allocator_choice({})[0] == default
    assert allocator_choice({"ESX_ALLOCATOR": " Reuse "})[0] == default
    assert allocator_choice({"ESX_ALLOCATOR": "system"}) == ("system", "ESX_ALLOCATOR=system")
    for key, value in [
        ("MALLOC_MMAP_MAX_", "0"),
        ("MALLOC_TRIM_THRESHOLD_", "1"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0"),
        ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ]:
        choice, why = allocator_choice({key: value})
        assert choice == "system" and key in why, (key, why)
    # settings that do not concern malloc leave the default alone
    assert allocator_choice({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})[0] == default
    assert allocator_choice({"LD_PRELOAD": "/opt/libfoo.so"})[0] == default


def test_a_typo_is_one_clear_error():
    with pytest.raises(EsxError, match=r"ESX_ALLOCATOR='resue'.*ESX_ALLOCATOR=system"):
        allocator_choice({"ESX_ALLOCATOR": "resue"})


FAULTS = """
import resource, sys, torch
from esx import runtime
assert runtime.allocator() == "system"  # importing esx changes nothing
assert runtime.allocator_why() == "no esx command applied one"
print(runtime.reuse_freed_memory(), file=sys.stderr)
for step in range(30):  # a training step's pattern: the same large tensor, freed, again
    if step == 10:  # the heap has grown to what the steps need (about 3 steps here)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20)  # 64 MiB, far above malloc's mmap threshold
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@needs_glibc
def test_reuse_stops_the_page_faults_of_freed_tensors():
    """The kernel's own count of minor page faults is the oracle: with malloc as is each
    64 MiB tensor is mapped and faulted in anew; kept for reuse, once the heap has grown
    (the first few steps), none is."""
    faults = {}
    for way in ("system", "reuse"):
        proc = subprocess.run(
            [sys.executable, "-c", FAULTS], env=_env(ESX_ALLOCATOR=way), capture_output=True,
            text=True, check=True,
        )  # fmt: skip
        assert proc.stderr.strip() == way
        faults[way] = int(proc.stdout)
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert faults["system"] >= 19 * pages, faults  # each of the 20 steps
    assert faults["reuse"] <= pages, faults  # about 0; a margin for the heap's layout


def test_a_run_is_bit_identical_with_either_allocator(tmp_path, tiny_recipe):
    tiny_recipe["train"].update(epochs=2)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe))
    for way in ("system", "reuse"):
        subprocess.run(
            [sys.executable, "-m", "esx", "run", str(recipe), "--out", str(tmp_path / way),
             "--quiet"], env=_env(ESX_ALLOCATOR=way), check=True,
        )  # fmt: skip
        first = (tmp_path / way / "run.log").read_text().splitlines()[0]
        said = {"reuse": "freed memory kept for reuse", "system": "ESX_ALLOCATOR=system"}
        want = (
            f"allocator {way} ({said[way]})" if GLIBC else "allocator system (not glibc's malloc)"
        )
        assert first.endswith(want), first
    for name in ("best.safetensors", "history.csv", "predictions.csv"):
        assert (tmp_path / "system" / name).read_bytes() == (tmp_path / "reuse" / name).read_bytes()
    system, reuse = (
        json.loads((tmp_path / w / "metrics.json").read_text()) for w in ("system", "reuse")
    )
    assert system["test"] == reuse["test"]

"""The files ``esx new plugin DIR --family aggregator|loss --name NAME`` writes.

The package installs with ``pip install -e DIR``, registers its component
through the ``esx`` entry point, and carries a test written with
``esx.testing``, a tiny recipe and a README; each file says what to change.
"""

from __future__ import annotations

import re
from pathlib import Path

from esx import outputs
from esx.errors import EsxError

FAMILIES = ("aggregator", "loss")

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "An esx {family}: {name}"
requires-python = ">=3.10"
dependencies = ["esx"]

[project.entry-points.esx]
{name} = "{package}"

[tool.setuptools]
packages = ["{package}"]
"""

AGGREGATOR = '''"""{title}: an esx aggregator (turns a batch's observed masks into targets).

Replace the body of ``forward`` with your method; keep the rules of
``esx.types.Targets``: masks (B, K, H, W) in [0, 1] at the masks' resolution,
weights (B, K) summing to 1 on supervised rows and 0 on images nobody
annotated. ``python -m pytest tests`` checks them.
"""

from __future__ import annotations

from pydantic import Field

import esx
from esx.interfaces import Aggregator, AggregatorOutput, Params
from esx.types import Batch, Targets


class {cls}Params(Params):
    threshold: float = Field(0.5, ge=0, le=1, description="share of valid masks that mark a pixel")


class {cls}(Aggregator):
    """A pixel is on where at least ``threshold`` of the image's valid masks mark it."""

    Params = {cls}Params

    def forward(self, batch: Batch) -> AggregatorOutput:
        valid = batch.mask_valid.to(batch.masks.dtype)  # (B, U)
        share = (batch.masks * valid[..., None, None]).sum(1, keepdim=True)
        share = share / valid.sum(1).clamp_min(1)[:, None, None, None]  # (B, 1, H, W)
        masks = (share >= self.params.threshold).to(share.dtype)
        weights = batch.annotated.to(share.dtype)[:, None]  # unannotated images: weight 0
        return AggregatorOutput(Targets(masks=masks, weights=weights))


@esx.hookimpl
def register_aggregators(register):
    register("{name}", {cls})
'''

LOSS = '''"""{title}: an esx explanation-supervision loss.

``pixel_loss`` gets the maps and the targets, both (N, K, h, w); esx reduces
it the standard way (mean over annotated pixels, weighted over the K targets,
mean over images). Override ``forward(maps, targets)`` instead for another
reduction. ``python -m pytest tests`` checks the rules.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

import esx
from esx.interfaces import Params, PixelLoss


class {cls}Params(Params):
    power: float = Field(2.0, gt=0, description="the error is |map - target| ** power")


class {cls}(PixelLoss):
    """|map - target| ** power per pixel."""

    Params = {cls}Params

    def pixel_loss(self, maps: Tensor, target: Tensor) -> Tensor:
        return (maps - target).abs().pow(self.params.power)


@esx.hookimpl
def register_losses(register):
    register("{name}", {cls})
'''

TEST = '''"""{title}'s contract, checked with esx.testing."""

from esx.testing import {check}
from {package} import {cls}


def test_{name}_keeps_the_{family}_contract():
    {check}({cls})
    {check}({cls}, {params})
'''

RECIPE = """# A tiny run of {name} on the built-in phantom (a minute on a laptop CPU):
#   esx run recipe.yaml --out runs/{name}
version: 1
label: "{title}"
data:       {{name: phantom, params: {{image_size: 64, n_train: 32, n_val: 16, n_test: 16}}}}
backbone:   {{name: timm, params: {{arch: test_resnet}}}}
explainer:  {{name: gradcam}}
aggregator: {{name: {aggregator}}}
loss:       {{name: {loss}}}
train:      {{epochs: 2, batch_size: 8, lr: 1.0e-3}}
eval:       {{overlays: 2}}
"""

README = """# {dist}

An esx {family}, `{name}`, made by `esx new plugin`.

```bash
pip install -e .              # registers `{name}` through the esx entry point
esx plugins {name}            # its summary and parameters
python -m pytest tests        # its contract, checked with esx.testing
esx run recipe.yaml --out runs/{name}
```

Edit `{package}/__init__.py`: the docstring (cite your method), the `Params`
model (every parameter typed, with a default and a description) and the
method itself. docs/reference/hooks.md in esx lists the rules of each family;
`esx.testing` (docs/howto/testing-plugins.md) checks them.
"""


def new_plugin(folder: Path, family: str, name: str) -> list[Path]:
    """Write the package; returns the files written."""
    if family not in FAMILIES:
        raise EsxError(
            f"--family {family!r}: the template covers {', '.join(FAMILIES)}; for the other "
            "families start from the examples in docs/reference/hooks.md"
        )
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise EsxError(
            f"--name {name!r}: use lower-case letters, digits and '_', starting with a letter "
            "(it becomes the component's name and part of the package's)"
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise EsxError(f"{folder} exists and is not an empty folder; choose a new folder")
    package = f"esx_{name}"
    cls = "".join(part.capitalize() for part in name.split("_"))
    fields = {
        "name": name, "cls": cls, "family": family, "package": package,
        "dist": f"esx-{name.replace('_', '-')}", "title": cls,
        "check": f"check_{family}",
        "params": '{"threshold": 1.0}' if family == "aggregator" else '{"power": 1.0}',
        "aggregator": name if family == "aggregator" else "consensus",
        "loss": name if family == "loss" else "gradia",
    }  # fmt: skip
    files = {
        "pyproject.toml": PYPROJECT,
        f"{package}/__init__.py": AGGREGATOR if family == "aggregator" else LOSS,
        f"tests/test_{name}.py": TEST,
        "recipe.yaml": RECIPE,
        "README.md": README,
    }
    written = []
    for rel, text in files.items():
        outputs.write_text(folder / rel, text.format(**fields))
        written.append(folder / rel)
    return written

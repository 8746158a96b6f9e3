"""Any timm CNN as an esx backbone.

The model is split at its ``forward_features`` output, the feature map the
classifier pools, which is where Grad-CAM reads. Weights never come from the
network: ``weights`` names a local file (timm checkpoint or safetensors) or
stays null for random initialisation. As with timm's pretrained weights, the
stem is adapted to ``in_chans`` (RGB kernels summed for 1 channel) and the
classifier head is re-initialised for the dataset's classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from pydantic import Field
from torch import Tensor

from esx.errors import DataError, EsxError
from esx.interfaces import Backbone, BuildContext, Params


class TimmParams(Params):
    arch: str = Field("resnet18", description="any timm CNN name, e.g. resnet18, efficientnet_b0")
    weights: str | None = Field(None, description="local weights file; null = random init")
    zero_init_last: bool = Field(
        True, description="timm's zero-init of each residual block's last BN (ResNets only)"
    )
    drop_rate: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")
    output_stride: int | None = Field(
        None, description="8, 16 or 32; a smaller stride gives larger explanation maps"
    )


class TimmBackbone(Backbone):
    """A timm model with ``in_chans`` and ``num_classes`` taken from the dataset.

    ``forward_features``: ``(B, C, H, W)`` → ``(B, K, h, w)`` (NHWC models are
    permuted to NCHW); ``forward_head``: → ``(B, num_classes)``.
    """

    Params = TimmParams

    def __init__(self, params: TimmParams, context: BuildContext) -> None:
        super().__init__(params, context)
        if params.arch not in timm.list_models():
            raise EsxError(
                f"backbone.params.arch: timm has no model {params.arch!r}; "
                'see `python -c "import timm; print(timm.list_models())"`'
            )
        kwargs: dict = dict(
            pretrained=False,
            num_classes=context.data.num_classes,
            in_chans=context.data.in_chans,
            drop_rate=params.drop_rate,
        )
        if params.arch.startswith(("resnet", "resnext", "seresnet", "test_resnet")):
            kwargs["zero_init_last"] = params.zero_init_last
        if params.output_stride is not None:
            kwargs["output_stride"] = params.output_stride
        if params.weights is not None:
            path = Path(params.weights).expanduser()
            if not path.is_file():
                raise DataError(
                    f"backbone.params.weights: no file at {path}; esx never downloads weights, "
                    "so give a local .safetensors/.pth file or set weights: null"
                )
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        try:
            self.model = timm.create_model(params.arch, **kwargs)
        except Exception as exc:
            if params.weights is not None:  # a truncated, foreign or mismatched weights file
                raise DataError(
                    f"backbone.params.weights: {path} could not be loaded into {params.arch!r} "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); give a "
                    "complete weights file of this architecture, or set weights: null"
                ) from exc
            if not isinstance(exc, RuntimeError | TypeError | ValueError):
                raise
            raise EsxError(f"backbone {params.arch!r} could not be built: {exc}") from exc
        self.nhwc = getattr(self.model, "output_fmt", "NCHW") == "NHWC"

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        return {"arch": "test_resnet", "zero_init_last": False}  # timm's 0.4 M-parameter test net

    def forward_features(self, image: Tensor) -> Tensor:
        feats = self.model.forward_features(image)
        return feats.permute(0, 3, 1, 2) if self.nhwc else feats

    def forward_head(self, features: Tensor) -> Tensor:
        if self.nhwc:
            features = features.permute(0, 2, 3, 1)
        return self.model.forward_head(features)

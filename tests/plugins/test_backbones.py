"""The timm backbone: local weights only, never a download."""

from __future__ import annotations


def test_local_weights_file_is_loaded(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    from esx.interfaces import BuildContext, DataInfo
    from esx_timm import TimmBackbone, TimmParams

    ctx = BuildContext(DataInfo("t", True, 1, 2, (32, 32), 1, True))
    src = timm.create_model("test_resnet", num_classes=2, in_chans=1)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    bb = TimmBackbone(TimmParams(arch="test_resnet", weights=str(path)), ctx)
    # timm keeps the feature weights and re-initialises the classifier head, as
    # for ImageNet checkpoints of another class count
    head = {f"{bb.model.default_cfg['classifier']}.{p}" for p in ("weight", "bias")}
    for k, v in src.state_dict().items():
        if k not in head:
            assert torch.equal(bb.model.state_dict()[k], v), k

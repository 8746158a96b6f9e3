"""The generative model of MAGI: encoders, annotator embeddings, decoder.

Shapes: R is the generation resolution (``gen_size``); U annotators.

- ``Enc_I``: image ``(B, C, R, R)`` → μ, log σ² ``(B, z_image)``
- ``Enc_T``: aggregated annotation T ``(B, 1, R, R)`` → μ, log σ² ``(B, z_annotation)``
- ``c``: ``(U, z_annotator)``, one learned embedding per annotator slot, N(0, 1) init
- ``Dec``: ``(z_I, z_T, c_u)`` and the image/T skip features → mask logits ``(B, U, R, R)``

Departure from the paper (whose code is not public): the decoder also sees
the image and T at resolution R through a small convolutional stem (a skip
connection), the latents enter as a per-annotator feature bias, and the
output is a residual on T (logits + 3·(2T − 1)), so an untrained generator
reproduces the observed vote. Both are options (``skip``, ``residual``):
with ``skip: image`` and ``residual: false`` T reaches the decoder only
through its latent z_T, so the generated masks are drawn from the image and a
16-number summary of the votes rather than copied from them. A decoder
that had to place a lesion a few pixels wide from a latent vector alone cannot
be taught by ~100 training images; with the skip it only has to learn each
annotator's transformation of the evidence (erode, dilate, shift, pick the
wrong object), which is what the annotator embeddings are meant to capture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _encoder(in_ch: int, width: int, z: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_ch, width, 3, 2, 1),
        nn.GELU(),
        nn.Conv2d(width, 2 * width, 3, 2, 1),
        nn.GELU(),
        nn.Conv2d(2 * width, 4 * width, 3, 2, 1),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, 2 * z),
    )


#: what the decoder's convolutional stem sees at resolution R
SKIPS = ("image+vote", "image", "vote")


class Generator(nn.Module):
    """Generates every annotator's mask for every image."""

    def __init__(
        self,
        in_chans: int,
        annotators: int,
        z_image: int,
        z_annotation: int,
        z_annotator: int,
        width: int,
        skip: str = "image+vote",
        residual: bool = True,
    ) -> None:
        super().__init__()
        if skip not in SKIPS:
            raise ValueError(f"skip {skip!r}: one of {', '.join(SKIPS)}")
        self.skip, self.residual = skip, residual
        stem_in = {"image+vote": in_chans + 1, "image": in_chans, "vote": 1}[skip]
        self.enc_image = _encoder(in_chans, width, z_image)
        self.enc_annotation = _encoder(1, width, z_annotation)
        self.annotator = nn.Parameter(torch.randn(annotators, z_annotator))
        self.stem = nn.Sequential(
            nn.Conv2d(stem_in, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2),
        )
        self.film = nn.Linear(z_image + z_annotation + z_annotator, 2 * width)
        self.head = nn.Sequential(
            nn.GELU(),
            nn.Conv2d(2 * width, width, 3, padding=2, dilation=2),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 1, 1),
        )
        self.prior_scale = 3.0
        #: run the head on channels-last activations (same numbers up to float rounding)
        self.channels_last = True

    @staticmethod
    def _sample(stats: Tensor, train: bool) -> tuple[Tensor, Tensor]:
        mu, logvar = stats.chunk(2, dim=1)
        logvar = logvar.clamp(-10, 10)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if train else mu
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
        return z, kl

    def forward(self, image: Tensor, annotation: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, R, R)``, ``(B, 1, R, R)`` → mask logits ``(B, U, R, R)``, KL ``(B,)``."""
        z_i, kl_i = self._sample(self.enc_image(image), self.training)
        z_t, kl_t = self._sample(self.enc_annotation(annotation), self.training)
        b, u = image.shape[0], self.annotator.shape[0]
        z = torch.cat(
            [
                z_i[:, None].expand(-1, u, -1),
                z_t[:, None].expand(-1, u, -1),
                self.annotator[None].expand(b, -1, -1),
            ],
            dim=2,
        )  # (B, U, Z)
        seen = {"image+vote": [image, annotation], "image": [image], "vote": [annotation]}
        shared = self.stem(torch.cat(seen[self.skip], dim=1))  # (B, W, R, R)
        feats = shared[:, None] + self.film(z)[..., None, None]  # (B, U, W, R, R)
        feats = feats.flatten(0, 1)
        if self.channels_last:
            # The head runs on B·U maps; oneDNN's convolutions (forward and backward) are
            # about twice as fast on channels-last activations on a CPU
            # (benchmarks/magi_generator.py). The weights keep their layout.
            feats = feats.contiguous(memory_format=torch.channels_last)
        logits = self.head(feats).reshape(b, u, *image.shape[-2:])
        if self.residual:
            # Residual on T: an untrained generator reproduces the observed vote,
            # and training learns each annotator's departure from it.
            logits = logits + self.prior_scale * (2 * annotation - 1)
        return logits, kl_i + kl_t


def resize(x: Tensor, size: int) -> Tensor:
    """Area-resize ``(B, C, H, W)`` to ``(B, C, size, size)``."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.adaptive_avg_pool2d(x, size)

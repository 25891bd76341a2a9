"""A PyTorch reference of the authors' AffineGAN generator and discriminators, for the tests.

Written here from the description of their model (AFFINEGAN.md and the module names and key
layout of their models/affineGAN_networks.py), not copied: a nested U-Net whose block at level i is
reached as `model` + `.sub` * i and holds `down_base` (E0's conv of that level), `down_res` (Ed's)
and `up_all` (the decoder step leaving the level), each an nn.Sequential whose indices give the
state_dict keys. Only used when torch is installed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _instance_norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ReferenceLevel(nn.Module):
    """One U-Net level: both encoders' convs into the level, the decoder's step out of it."""

    def __init__(self, level: int, levels: int, channels: list[int], dropout: bool):
        super().__init__()
        outermost, innermost = level == 0, level == levels - 1
        inputs = 3 if outermost else channels[level - 1]
        width = channels[level]

        def encoder_step():
            convolution = nn.Conv2d(inputs, width, 4, stride=2, padding=1)
            if outermost:
                return nn.Sequential(convolution)
            if innermost:
                return nn.Sequential(nn.LeakyReLU(0.2), convolution)
            return nn.Sequential(nn.LeakyReLU(0.2), convolution, _instance_norm(width))

        self.down_base = encoder_step()
        self.down_res = encoder_step()
        up_inputs = width if innermost else 2 * width
        up_outputs = 3 if outermost else channels[level - 1]
        transposed = nn.ConvTranspose2d(up_inputs, up_outputs, 4, stride=2, padding=1)
        if outermost:
            self.up_all = nn.Sequential(nn.ReLU(), transposed, nn.Tanh())
        else:
            steps = [nn.ReLU(), transposed, _instance_norm(up_outputs)]
            self.up_all = nn.Sequential(*steps, *([nn.Dropout(0.5)] if dropout else []))
        self.sub = None if innermost else ReferenceLevel(level + 1, levels, channels, dropout)
        self.outermost, self.innermost = outermost, innermost

    def forward(self, base_input, delta_input, base_scale, delta_scale):
        """Returns (this level's decoder output with the skip in front, bottleneck feature)."""
        base = self.down_base(base_input)
        delta = self.down_res(delta_input)
        if self.innermost:
            bottleneck = base_scale * base + delta_scale * delta
            decoded, feature = self.up_all(bottleneck), bottleneck
        else:
            inner, feature = self.sub(base, delta, base_scale, delta_scale)
            decoded = self.up_all(inner)
        if self.outermost:
            return decoded, feature
        skip = base_scale * base_input + delta_scale * delta_input
        return torch.cat([skip, decoded], 1), feature


class ReferenceGenerator(nn.Module):
    """G(I0, a): forward(image, 1, a) -> (frame, bottleneck).

    forward(image, 1, 0) gives E0's bottleneck, forward(image, 0, 1) Ed's.
    """

    def __init__(self, image_size: int = 256, ngf: int = 64, dropout: bool = True):
        super().__init__()
        levels = int(np.log2(image_size))
        channels = [ngf * min(2**level, 8) for level in range(levels)]
        self.model = ReferenceLevel(0, levels, channels, dropout)

    def forward(self, image, base_scale, delta_scale):
        return self.model(image, image, base_scale, delta_scale)


class ReferencePatchDiscriminator(nn.Module):
    """Their 3-layer PatchGAN: convs at Sequential indices 0, 2, 5, 8, 11."""

    def __init__(self, ndf: int = 64):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(6, ndf, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1),
            _instance_norm(ndf * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1),
            _instance_norm(ndf * 4),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 1),
            _instance_norm(ndf * 8),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 8, 1, 4, 1, 1),
        )

    def forward(self, pairs):
        return self.model(pairs)


class ReferenceIntensityDiscriminator(nn.Module):
    """Their D_alpha: Linear layers at Sequential indices 0, 2, 4."""

    def __init__(self, num_targets: int = 5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_targets, num_targets),
            nn.LeakyReLU(0.2),
            nn.Linear(num_targets, num_targets),
            nn.LeakyReLU(0.2),
            nn.Linear(num_targets, 1),
        )

    def forward(self, intensities):
        return self.net(intensities)


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Weights normal(0, 0.02) like their init; biases normal(0, 0.02) too, so they are tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return module.eval()


def to_input(image_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [-1, 1] (their transforms.Normalize(0.5, 0.5))."""
    values = torch.from_numpy(image_uint8.astype(np.float32) / 255.0)
    return ((values - 0.5) / 0.5).permute(2, 0, 1)[None]


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Their tensor2im: (x + 1) / 2 * 255, truncated to uint8; [N, 3, H, W] -> [N, H, W, 3]."""
    values = (frames.detach().numpy().transpose(0, 2, 3, 1) + 1.0) / 2.0 * 255.0
    return values.astype(np.uint8)


def reference_frames(generator: ReferenceGenerator, image_uint8, intensities) -> np.ndarray:
    with torch.no_grad():
        image = to_input(image_uint8)
        return np.concatenate(
            [to_uint8(generator(image, 1.0, float(value))[0]) for value in intensities]
        )


def reference_intensity(generator: ReferenceGenerator, neutral_uint8, frame_uint8) -> float:
    """Their get_alpha: |sum((f_t - f_0) * f_d)| / (|f_d| + 1e-6), on bottleneck features."""
    with torch.no_grad():
        neutral, frame = to_input(neutral_uint8), to_input(frame_uint8)
        base = generator(neutral, 1.0, 0.0)[1].squeeze()
        direction = generator(neutral, 0.0, 1.0)[1].squeeze()
        target = generator(frame, 1.0, 0.0)[1].squeeze()
        value = torch.abs(torch.sum((target - base) * direction)) / (direction.norm() + 1e-6)
    return float(value)

"""The fast input path: a whole uint8 dataset resident on the training device, batches augmented
there (grayscale to RGB, resize, per-sample random or centre crop, flips, normalization) with no
worker processes and no host round trip. It follows the torchvision pipeline of netspec_torch.data
step for step (resized images are rounded to whole grey levels, as torchvision does for uint8);
the two agree within one grey level (torchvision resizes uint8 in fixed point) and differ otherwise
only in which random crops and flips they draw.

Randomness comes from a generator seeded by (seed, epoch, batch index), so a resumed epoch draws
the same crops and flips as an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from netspec.analysis.checker import CheckedNet
from netspec.language.spec import DataSpec
from netspec.train.sources import normalization


class DeviceBatches:
    def __init__(self, images: torch.Tensor, labels, net: CheckedNet, data: DataSpec, *, train: bool,
                 device: torch.device, seed: int = 0, channels_last: bool = False):
        self.images = images.to(device)  # (N, C, H, W) uint8
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(device)
        self.net, self.data, self.train, self.device = net, data, train, device
        self.seed, self.channels_last = seed, channels_last
        channels = net.input_shape[0]
        mean, std = normalization(data, channels)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, indices: list[int], batch_size: int, *, epoch: int = 0, first_batch: int = 0):
        order = torch.as_tensor(indices, dtype=torch.long).to(self.device)
        for number, start in enumerate(range(0, len(order), batch_size), start=first_batch):
            chosen = order[start: start + batch_size]
            generator = torch.Generator(device=self.device).manual_seed(
                hash((self.seed, epoch, number)) & 0x7FFF_FFFF_FFFF_FFFF)
            yield self.prepare(self.images.index_select(0, chosen), generator), self.labels.index_select(0, chosen)

    def prepare(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        channels, height, width = self.net.input_shape
        data = self.data
        x = images
        if x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        x = x.float()
        if data.resize is not None:
            x = _resize(x, _shorter_side_to(x.shape[-2:], data.resize))
            if self.train and data.random_crop:
                x = _random_crops(x, height, width, generator)
            else:
                top, left = round((x.shape[-2] - height) / 2), round((x.shape[-1] - width) / 2)
                x = x[..., top: top + height, left: left + width]
        elif tuple(x.shape[-2:]) != (height, width):
            x = _resize(x, (height, width))
        if self.train and data.hflip:
            flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


def _shorter_side_to(size: torch.Size, shorter: int) -> tuple[int, int]:
    height, width = int(size[0]), int(size[1])
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # as torchvision resizes uint8 images: antialiased bilinear, rounded back to whole grey levels
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).round_().clamp_(0, 255)


def _random_crops(x: torch.Tensor, height: int, width: int, generator) -> torch.Tensor:
    """A different random crop for each image, by gathering rows and columns."""
    batch, _, full_h, full_w = x.shape
    tops = torch.randint(0, full_h - height + 1, (batch,), device=x.device, generator=generator)
    lefts = torch.randint(0, full_w - width + 1, (batch,), device=x.device, generator=generator)
    rows = (tops[:, None] + torch.arange(height, device=x.device)).view(batch, 1, height, 1)
    cols = (lefts[:, None] + torch.arange(width, device=x.device)).view(batch, 1, 1, width)
    x = x.gather(2, rows.expand(-1, x.shape[1], -1, full_w))
    return x.gather(3, cols.expand(-1, x.shape[1], height, -1))

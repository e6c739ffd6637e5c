"""Dropout with masks drawn from uniform numbers, for training on the CPU.

nn.Dropout draws its masks with ``bernoulli_``, which on the CPU runs one element at a time (torch
builds have its parallel MKL path switched off). One layer's forward pass on 32×9216 bfloat16
values, as in alexnet-digits' main command, takes 2.7 ms with nn.Dropout and 0.8 ms here (3.4 and
2.7 ms in float32) on the 2-core CI machine (benchmarks/dropout_masks.py --mask-timing,
benchmarks/results/dropout_mask_timing.json). An element whose uniform draw is at least ``p`` is kept with probability
``1 - p``, exactly the law nn.Dropout draws from, and kept elements are scaled by ``1 / (1 - p)``
as there: training is the same in distribution. The random numbers drawn differ from
nn.Dropout's, so a run reproduces itself (resumes included), not a run with nn.Dropout's masks.

The generated model source keeps nn.Dropout; the trainer swaps the modules of its own live model.
"""

from __future__ import annotations

import torch
from torch import nn


class UniformMaskDropout(nn.Dropout):
    """nn.Dropout, its mask from ``torch.rand`` (same ``p``, same ``inplace``, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x.mul_(0) if self.inplace else x * 0
        keep = torch.rand(x.shape, device=x.device) >= self.p
        scale = keep.to(x.dtype).mul_(1 / (1 - self.p))  # saved for backward, as nn.Dropout saves its mask
        return x.mul_(scale) if self.inplace else x * scale


def use_uniform_masks(model: nn.Module) -> int:
    """Swap each nn.Dropout in ``model`` for a UniformMaskDropout; returns how many were swapped."""
    swapped = 0
    for name, module in list(model.named_modules()):
        if type(module) is nn.Dropout:  # subclasses may mean something else; leave them be
            parent_name, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attribute, UniformMaskDropout(module.p, module.inplace))
            swapped += 1
    return swapped

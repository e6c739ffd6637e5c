"""An independent PyTorch rendering of checked layers, written directly against torch.nn, used
as an oracle: the checker's shapes and parameter counts must equal what torch really does."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU,
    "elu": nn.ELU, "softmax": lambda: nn.Softmax(dim=1),
}


class AsymmetricPad(nn.Module):
    def __init__(self, pads, value=0.0):
        super().__init__()
        top, bottom, left, right = pads
        self.pads = (left, right, top, bottom)
        self.value = value

    def forward(self, x):
        return F.pad(x, self.pads, value=self.value)


def _padded(module_factory, pads, pad_value=0.0):
    """A window op with per-side padding: symmetric goes to the op, asymmetric to F.pad first."""
    top, bottom, left, right = pads
    if top == bottom and left == right:
        return [module_factory((top, left))]
    return [AsymmetricPad(pads, pad_value), module_factory((0, 0))]


def torch_modules(checked) -> list[nn.Module]:
    """The torch modules for one checked layer (an op plus its activation shorthand)."""
    layer, res, kind = checked.layer, checked.resolved, checked.type
    mods: list[nn.Module]
    if kind == "conv2d":
        mods = _padded(lambda p: nn.Conv2d(res["in_channels"], layer.out_channels, layer.kernel_size,
                                           layer.stride, p, layer.dilation, layer.groups, layer.bias),
                       res["padding"])
    elif kind == "maxpool2d":
        mods = _padded(lambda p: nn.MaxPool2d(layer.kernel_size, res["stride"], p, ceil_mode=layer.ceil_mode),
                       res["padding"], float("-inf"))
    elif kind == "avgpool2d":
        mods = _padded(lambda p: nn.AvgPool2d(layer.kernel_size, res["stride"], p, ceil_mode=layer.ceil_mode,
                                              count_include_pad=layer.count_include_pad), res["padding"])
    elif kind == "adaptive_avgpool2d":
        mods = [nn.AdaptiveAvgPool2d(layer.output_size)]
    elif kind == "lrn":
        mods = [nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)]
    elif kind == "batchnorm2d":
        mods = [nn.BatchNorm2d(res["num_features"], layer.eps, layer.momentum, layer.affine)]
    elif kind == "leaky_relu":
        mods = [nn.LeakyReLU(layer.negative_slope)]
    elif kind == "elu":
        mods = [nn.ELU(layer.alpha)]
    elif kind in ACTIVATIONS:
        mods = [ACTIVATIONS[kind]()]
    elif kind == "dropout":
        mods = [nn.Dropout(layer.p)]
    elif kind == "flatten":
        mods = [nn.Flatten()]
    elif kind == "linear":
        mods = [nn.Linear(res["in_features"], layer.out_features, layer.bias)]
    else:
        raise AssertionError(f"no torch reference for layer type {kind!r}: add one to tests/reference_torch.py")
    activation = getattr(layer, "activation", None)
    if activation:
        mods.append(ACTIVATIONS[activation]())
    return mods


def run_torch(net, batch: int = 2):
    """Per-layer (output shape without batch, trainable params, buffers) measured in torch."""
    torch.manual_seed(0)
    x = torch.randn(batch, *net.input_shape)
    measured = []
    with torch.no_grad():
        for checked in net.layers:
            mods = torch_modules(checked)
            for mod in mods:
                mod.eval()
                x = mod(x)
            params = sum(p.numel() for m in mods for p in m.parameters())
            buffers = sum(b.numel() for m in mods for name, b in m.named_buffers() if "num_batches" not in name)
            measured.append((tuple(x.shape[1:]), params, buffers))
    return measured

"""Small PyTorch models that `netspec import` is tried on in tests/test_import.py (imported by name,
as a user's own package would be: tests.import_models:NAME)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """A residual block whose uses differ: a stride, and a shortcut projection in the first."""

    def __init__(self, inp: int, out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out)
        self.act = nn.ReLU()
        self.shortcut = nn.Conv2d(inp, out, 1, stride, bias=False) if stride != 1 or inp != out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        return y + (self.shortcut(x) if self.shortcut is not None else x)


class Small(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stage1 = nn.Sequential(Block(8, 8), Block(8, 8), Block(8, 8))
        self.stage2 = nn.Sequential(Block(8, 16, 2), Block(16, 16), Block(16, 16))
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Rolled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(self.conv(x), 1, dims=2)


class Branching(nn.Module):
    """Control flow that depends on the data."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 0:
            return y
        return -y


class WithUnusedHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.aux = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PoolsWhenLarge(nn.Module):
    """Control flow on a shape (timm's pre-logits pool only an image larger than their kernel):
    torch.fx cannot trace it, torch.export takes the branch the input takes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 4:
            x = nn.functional.max_pool2d(x, 2)
        return torch.relu(self.conv(x))


class ShapeBranching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = PoolsWhenLarge()
        self.head = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.stem(x)), 1))


def shape_branching() -> ShapeBranching:
    return ShapeBranching()


def small(num_classes: int = 5) -> Small:
    return Small(num_classes)


def rolled() -> Rolled:
    return Rolled()


def branching() -> Branching:
    return Branching()


def with_unused_head() -> WithUnusedHead:
    return WithUnusedHead()


class Dead(nn.Module):
    """Its output does not depend on its input: a bias far below zero leaves every ReLU off."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.bias.fill_(-1e4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.act(self.conv(x)), 1), 1))


def dead() -> Dead:
    return Dead()


def small_vit():
    """torchvision's VisionTransformer, small enough for a test."""
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32,
                             num_classes=10)


def small_swin():
    """torchvision's SwinTransformer, small enough for a test: shifted windows, patch merging and a
    stochastic depth that grows block by block."""
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[2, 2], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           stochastic_depth_prob=0.1, num_classes=10)


def small_keras(activation: str = "relu"):
    """A Keras functional model with what Keras writes differently from PyTorch: zero padding as a
    layer of its own (symmetric before a convolution, TensorFlow's 'same' before a max pool), a
    convolution's activation in the layer, and a Dense after a Flatten of an image."""
    import keras

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.ZeroPadding2D(1, name="pad")(inputs)
    x = keras.layers.Conv2D(4, 3, activation=activation, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(5, name="fc")(x)
    return keras.Model(inputs, outputs, name="small_keras")


def keras_pool_after_linear():
    """Zero padding then a max pool of values that may be negative (ResNet-V2's stem)."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    return keras.Model(inputs, keras.layers.MaxPooling2D(3, 2, name="pool")(x))


def small_densenet():
    from torchvision.models import DenseNet

    return DenseNet(growth_rate=4, block_config=(2, 3), num_init_features=8, bn_size=2, num_classes=10)


class SumsAList(nn.Module):
    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] + parts[1]


class GivesAList(nn.Module):
    """A module called with a list it does not concatenate first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.sums = SumsAList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.sums([y, y])


def gives_a_list() -> GivesAList:
    return GivesAList()

"""Normalization."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from netspec.layers.activations import ActivationName
from netspec.layers.base import (
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    ShapeIssue,
    TensorShape,
    WeightTensor,
    channels_of,
    features_last,
    layout_of,
    require_spatial,
    spatial_rank,
)


class LocalResponseNorm(Layer):
    """Local response normalization across channels (the paper's section 3.3).

        b_c = a_c / (k + alpha/size · Σ a_j²) ** beta,  j over ``size`` channels centred on c

    ``alpha`` follows PyTorch and Caffe, which divide it by ``size``; the paper's formula does not,
    so the paper's α = 1e-4 with n = 5 is ``alpha: 5.0e-4`` here. TensorFlow's
    ``local_response_normalization`` takes depth_radius = (size - 1) / 2, bias = k and
    alpha = alpha / size. Shape unchanged; params = 0, MACs = 0.
    """

    category = "normalization"
    synonyms = {"n": "size", "depth_radius": "size", "bias": "k"}
    type_synonyms = ("local_response_norm", "localresponsenorm")

    examples = (
        ((16, 9, 9), {"size": 5, "alpha": 5e-4, "beta": 0.75, "k": 2.0}),
        ((8, 5, 5), {"size": 4, "alpha": 1e-3, "beta": 0.5, "k": 1.0}),
    )

    type: Literal["lrn"]
    size: PositiveInt = Field(5, description="Number of neighbouring channels summed over.")
    alpha: PositiveFloat = Field(1e-4, description="Scale; divided by size, as in PyTorch and Caffe.")
    beta: PositiveFloat = 0.75
    k: float = Field(1.0, ge=0, description="Additive constant (the paper uses 2).")

    def analyze(self, inp: LayerInput) -> Analysis:
        require_spatial(inp, "lrn")
        return Analysis(output=inp.shape)


class _BatchNorm(Layer):
    """Batch normalization over the channels of a tensor of any rank; a concrete class sets the
    ranks it takes (``spatial_ranks``: 0 is flat features)."""

    spatial_ranks: ClassVar[tuple[int, ...]]
    category = "normalization"
    input_channel_keys = ("num_features",)
    synonyms = {"epsilon": "eps"}
    batch_statistics = True

    weights = (WeightTensor("weight", "gamma", needs="affine"), WeightTensor("bias", "beta", needs="affine"),
               WeightTensor("running_mean", "moving_mean", trained=False),
               WeightTensor("running_var", "moving_variance", trained=False))
    torch_only_buffers = ("num_batches_tracked",)

    type: str  # each concrete class's Literal; declared here to keep the fields in this order
    eps: PositiveFloat = 1e-5
    momentum: float = Field(0.1, gt=0, lt=1, description="PyTorch convention: weight of the new batch.")
    affine: bool = True
    activation: ActivationName | None = Field(None, description="Activation applied to the output "
                                              "(torchvision's conv-bn-relu blocks).")

    def analyze(self, inp: LayerInput) -> Analysis:
        if spatial_rank(inp.shape) == 0 and 0 in self.spatial_ranks:
            c = inp.shape[0]
        else:
            c, _ = require_spatial(inp, self.kind, max(self.spatial_ranks))
        return Analysis(output=inp.shape, params=2 * c if self.affine else 0, non_trainable=2 * c,
                        resolved={"num_features": c})


class BatchNorm1d(_BatchNorm):
    """Batch normalization over the channels of a sequence C×L, or of flat features (PyTorch
    ``nn.BatchNorm1d``, Keras ``BatchNormalization``).

    Shape unchanged. params = 2·C (when ``affine``); non-trainable = 2·C (running mean and
    variance). MACs = 0.
    """

    spatial_ranks = (0, 1)
    type_synonyms = ("batch_norm1d",)

    examples = (((8, 20), {}), ((16,), {"eps": 1e-3}), ((4, 9), {"affine": False, "activation": "relu"}))

    type: Literal["batchnorm1d"]


class BatchNorm2d(_BatchNorm):
    """Batch normalization over channels (PyTorch ``nn.BatchNorm2d``, Keras ``BatchNormalization``).

    Shape unchanged. params = 2·C (scale and shift, when ``affine``); non-trainable = 2·C (running
    mean and variance, which Keras counts as parameters and PyTorch keeps as buffers). MACs = 0.
    """

    spatial_ranks = (2,)
    type_synonyms = ("batchnorm", "batch_norm", "batchnormalization")

    examples = (
        ((8, 6, 6), {}),
        ((4, 5, 5), {"affine": False, "eps": 1e-3}),
        ((4, 5, 5), {"eps": 1e-3, "activation": "relu"}),
    )

    type: Literal["batchnorm2d"]


class BatchNorm3d(_BatchNorm):
    """Batch normalization over the channels of a volume C×D×H×W (PyTorch ``nn.BatchNorm3d``,
    Keras ``BatchNormalization``).

    Shape unchanged. params = 2·C (when ``affine``); non-trainable = 2·C. MACs = 0.
    """

    spatial_ranks = (3,)
    type_synonyms = ("batch_norm3d",)

    examples = (((4, 3, 5, 5), {}), ((6, 2, 4, 4), {"eps": 1e-3, "activation": "relu"}))

    type: Literal["batchnorm3d"]


class LayerNorm(Layer):
    """Layer normalization of each position's features (PyTorch ``nn.LayerNorm``, Keras
    ``LayerNormalization``): over the last axis of a token sequence (L×D) or of flat features,
    and over the channels at every position of a channels-first tensor (C×H×W, C×L), as
    torchvision's ConvNeXt normalizes an image (its ``LayerNorm2d``).

        y = (x - mean) / sqrt(var + eps) · weight + bias   (mean and biased variance over the features)

    Shape unchanged. params = 2·D (weight and bias, when ``elementwise_affine``), D the features
    normalized; MACs = 0, as for batch norm. PyTorch's eps default is 1e-5 and Keras' 1e-3: the
    generated Keras code always writes it.
    """

    category = "normalization"
    input_channel_keys = ("normalized_shape",)
    synonyms = {"epsilon": "eps", "center": "elementwise_affine", "scale": "elementwise_affine"}
    type_synonyms = ("layer_norm", "layernormalization")

    examples = (
        (TensorShape((5, 8), TOKENS), {}),
        ((12,), {"eps": 1e-6}),
        ((6, 4, 5), {"eps": 1e-6}),  # over the channels at each pixel, as ConvNeXt's LayerNorm2d
        ((4, 7), {"elementwise_affine": False}),
    )

    weights = (WeightTensor("weight", "gamma", needs="elementwise_affine"),
               WeightTensor("bias", "beta", needs="elementwise_affine"))

    type: Literal["layernorm"]
    eps: PositiveFloat = Field(1e-5, description="Added to the variance; PyTorch's default (Keras' is 1e-3).")
    elementwise_affine: bool = Field(True, description="A learned scale and shift per feature.")

    def analyze(self, inp: LayerInput) -> Analysis:
        features = channels_of(inp.shape)
        over = "last" if features_last(inp.shape) or len(inp.shape) == 1 else "channels"
        return Analysis(output=inp.shape, params=2 * features if self.elementwise_affine else 0,
                        resolved={"normalized_shape": features, "over": over})


class GroupNorm(Layer):
    """Group normalization (PyTorch ``nn.GroupNorm``, Keras ``GroupNormalization``): the channels
    split into ``num_groups`` groups, each normalized over its channels and every position, for
    channels-first tensors of any rank (C×H×W, C×L, C×D×H×W) or flat features.

        y = (x - mean_g) / sqrt(var_g + eps) · weight_c + bias_c

    Shape unchanged. params = 2·C (when ``affine``); MACs = 0. Keras' epsilon default is 1e-3,
    PyTorch's 1e-5: the generated Keras code always writes it.
    """

    category = "normalization"
    input_channel_keys = ("num_channels",)
    synonyms = {"groups": "num_groups", "epsilon": "eps"}
    type_synonyms = ("group_norm", "groupnormalization")

    examples = (
        ((8, 5, 5), {"num_groups": 2}),
        ((6, 9), {"num_groups": 3, "eps": 1e-6}),
        ((4, 3, 3), {"num_groups": 4, "affine": False}),
    )

    weights = (WeightTensor("weight", "gamma", needs="affine"), WeightTensor("bias", "beta", needs="affine"))

    type: Literal["groupnorm"]
    num_groups: PositiveInt = Field(description="Groups the channels are split into; must divide them.")
    eps: PositiveFloat = Field(1e-5, description="Added to the variance; PyTorch's default (Keras' is 1e-3).")
    affine: bool = Field(True, description="A learned scale and shift per channel.")

    def analyze(self, inp: LayerInput) -> Analysis:
        if features_last(inp.shape):
            layout = layout_of(inp.shape)
            raise ShapeIssue(f"groupnorm normalizes channels-first tensors, but {inp.producer} yields "
                             f"{layout.kind} ({layout.name} {'×'.join(map(str, inp.shape))})",
                             hint="use layernorm to normalize the features at each position")
        channels = inp.shape[0]
        if channels % self.num_groups:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            raise ShapeIssue(f"num_groups={self.num_groups} does not divide the {channels} channels",
                             field="num_groups", hint=f"one of {', '.join(map(str, divisors[-6:]))}")
        return Analysis(output=inp.shape, params=2 * channels if self.affine else 0,
                        resolved={"num_channels": channels})

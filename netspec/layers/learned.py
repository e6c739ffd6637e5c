"""Learned tensors: a parameter applied to the input without a layer around it, as torchvision
keeps ViT's ``class_token``, its ``encoder.pos_embedding`` and ConvNeXt's ``layer_scale`` as
attributes of the module that uses them. The layer's name is the tensor's state-dict key, so a
layer named ``layer_scale`` inside ``features.1.0`` loads ``features.1.0.layer_scale``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.base import (
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    TensorShape,
    WeightTensor,
    channels_of,
    features_last,
    require_tokens,
)


class _LearnedTensor(Layer):
    category = "learned"
    # the layer is one tensor, keyed by the layer's own path (WeightTensor "" below): in PyTorch a
    # parameter of the enclosing module, applied by an expression in its forward()
    learned_tensor: ClassVar[bool] = True
    chains_as_module = False


class LayerScale(_LearnedTensor):
    """A learned scale per channel, multiplied in (ConvNeXt's ``layer_scale``, CaiT's LayerScale):
    y = x · γ_c, with γ initialized to ``init``. Channels first, PyTorch keeps γ as C×1×1 (C×1 for
    a sequence), as torchvision's ConvNeXt does; features last, as C. params = C; MACs = the
    input's numel."""

    type_synonyms = ("layerscale", "scale")

    examples = (((6, 4, 5), {}), (TensorShape((5, 8), TOKENS), {"init": 0.1}), ((7,), {"init": 1.0}))

    type: Literal["layer_scale"]
    init: float = Field(1e-6, description="The initial scale (ConvNeXt: 1e-6).")

    input_channel_keys = ("channels",)

    def weight_tensors(self, resolved=None) -> tuple[WeightTensor, ...]:
        resolved = resolved or {"channels": 1, "ones": 0}
        torch_shape = (resolved["channels"], *(1,) * resolved["ones"])
        return (WeightTensor("", "gamma", reshape=(torch_shape, (resolved["channels"],))),)

    def analyze(self, inp: LayerInput) -> Analysis:
        channels = channels_of(inp.shape)
        # PyTorch keeps γ as C×1×1 to broadcast over a channels-first image
        ones = 0 if features_last(inp.shape) else len(inp.shape) - 1
        return Analysis(output=inp.shape, params=channels, macs=math.prod(inp.shape),
                        resolved={"channels": channels, "ones": ones})


class ClassToken(_LearnedTensor):
    """A learned token put before a token sequence (ViT's ``class_token``, a 1×1×D parameter):
    L×D becomes (L + 1)×D, and the classifier later reads that first token (``select``).
    params = D; MACs = 0."""

    type_synonyms = ("cls_token", "class_embedding")

    examples = ((TensorShape((4, 6), TOKENS), {}),)
    weights = (WeightTensor("", "token"),)
    input_channel_keys = ("features",)

    type: Literal["class_token"]

    def analyze(self, inp: LayerInput) -> Analysis:
        require_tokens(inp, f"{self.kind} acts on")
        length, features = inp.shape
        return Analysis(output=TensorShape((length + 1, features), TOKENS), params=features,
                        resolved={"features": features})


class PositionEmbedding(_LearnedTensor):
    """A learned embedding of each position, added to a token sequence (ViT's
    ``encoder.pos_embedding``, a 1×L×D parameter initialized from N(0, ``std``²)). Shape unchanged;
    params = L·D; MACs = L·D (the additions)."""

    type_synonyms = ("pos_embedding", "positional_embedding", "position_embeddings")

    examples = ((TensorShape((4, 6), TOKENS), {}), (TensorShape((3, 5), TOKENS), {"std": 0.5}))
    weights = (WeightTensor("", "embedding"),)
    input_channel_keys = ("features",)

    type: Literal["position_embedding"]
    std: float = Field(0.02, gt=0, description="The standard deviation of the initial values (ViT: 0.02).")

    def analyze(self, inp: LayerInput) -> Analysis:
        require_tokens(inp, f"{self.kind} acts on")
        length, features = inp.shape
        return Analysis(output=inp.shape, params=length * features, macs=length * features,
                        resolved={"length": length, "features": features})

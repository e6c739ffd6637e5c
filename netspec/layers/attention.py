"""Attention."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from netspec.layers.base import (
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    ShapeIssue,
    TensorShape,
    WeightTensor,
    require_tokens,
)


class MultiheadAttention(Layer):
    """Multi-head self-attention over a token sequence L×D (PyTorch ``nn.MultiheadAttention`` with
    ``batch_first=True``, called on (x, x, x) as ViT's encoder blocks call it), with PyTorch's packed
    weights: ``in_proj_weight`` (3·D×D, the query, key and value projections stacked),
    ``in_proj_bias``, ``out_proj.weight`` and ``out_proj.bias``.

        q, k, v = split(x · in_projᵀ + b);  per head: softmax(q·kᵀ / sqrt(D/heads)) · v;  out_proj of the heads joined

    Shape unchanged. params = 4·D² + 4·D (with bias). MACs = 4·L·D² (the four projections) + 2·L²·D
    (scores and weighted sum), as torchvision's published operation counts take them. Training
    keeps the heads·L² attention weights too, which the memory estimate counts.
    """

    category = "attention"
    input_channel_keys = ("embed_dim",)
    chains_as_module = False
    synonyms = {"heads": "num_heads", "n_heads": "num_heads", "attention_dropout": "dropout",
                "use_bias": "bias"}
    type_synonyms = ("attention", "self_attention", "multi_head_attention", "mha")

    examples = (
        (TensorShape((5, 8), TOKENS), {"num_heads": 2}),
        (TensorShape((4, 12), TOKENS), {"num_heads": 3, "dropout": 0.1}),
        (TensorShape((6, 8), TOKENS), {"num_heads": 4, "bias": False}),
    )

    weights = (WeightTensor("in_proj_weight", "in_proj_kernel", to_keras=(1, 0)),
               WeightTensor("in_proj_bias", "in_proj_bias", needs="bias"),
               WeightTensor("out_proj.weight", "out_proj_kernel", to_keras=(1, 0)),
               WeightTensor("out_proj.bias", "out_proj_bias", needs="bias"))

    type: Literal["multihead_attention"]
    num_heads: PositiveInt = Field(description="Heads the features are split into; must divide them.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the attention weights, in training.")
    bias: bool = Field(True, description="Biases on the projections.")

    def analyze(self, inp: LayerInput) -> Analysis:
        require_tokens(inp, "multihead_attention attends over")
        length, features = inp.shape
        if features % self.num_heads:
            divisors = [d for d in range(1, features + 1) if features % d == 0]
            raise ShapeIssue(f"num_heads={self.num_heads} does not divide the {features} features of each token",
                             field="num_heads", hint=f"one of {', '.join(map(str, divisors[-6:]))}")
        params = 4 * features * features + (4 * features if self.bias else 0)
        return Analysis(output=inp.shape, params=params,
                        macs=4 * length * features * features + 2 * length * length * features,
                        sees_whole_input=True, kept_elements=self.num_heads * length * length,
                        resolved={"embed_dim": features})

"""The names the generated Keras code binds, which a spec's names must not take: a static set,
collected by netspec's core through the entry-point group "netspec.reserved_names"."""

from __future__ import annotations

# layers the generated module defines itself (templates/module.py.j2), for what Keras lacks
HELPER_LAYERS = ("LocalResponseNorm", "NegInfPadding1D", "NegInfPadding2D", "NegInfPadding3D", "AdaptiveAvgPool2D",
                 "SelectToken", "MultiHeadSelfAttention", "LayerScale", "ClassToken", "PositionEmbedding", "Chunk",
                 "ChannelShuffle", "PatchMerge", "ShiftedWindowAttention", "TorchRecurrent", "TorchLSTM", "TorchGRU",
                 "Partition", "Departition", "RelativePositionalAttention")

# bound at module level in the generated file: a layer, spec or module named so would hide it
MODULE_NAMES = {"keras": "the keras package", **{name: "a helper layer of the Keras code" for name in HELPER_LAYERS}}

# a layer is a variable of the builder function, not an attribute: no inherited names to avoid
ATTRIBUTE_NAMES: dict[str, str] = {}

"""What a generated torch module needs beyond torch and nn: imports, and the helper classes it
defines for what torch lacks, as the code that writes each expression declares them (a macro
calls ``need("F")``), never found by searching the rendered text."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

OPTIONAL_IMPORTS = {"F": "import torch.nn.functional as F", "OrderedDict": "from collections import OrderedDict"}
# the helper classes templates/module.py.j2 defines when a layer's code needs one
HELPER_CLASSES = ("ChannelLayerNorm", "Permute", "ToTokens", "SelectToken", "StochasticDepth", "PatchMerge",
                  "ChannelAffine", "ShiftedWindowAttention", "Partition", "Departition", "RelativePositionalAttention")
# the helper classes whose code calls torch.nn.functional
HELPERS_USING_FUNCTIONAL = {"ChannelLayerNorm", "PatchMerge", "ShiftedWindowAttention"}
_needed: ContextVar[set[str] | None] = ContextVar("netspec_torch_needed_imports", default=None)


def need(name: str) -> str:
    """Record that the module being rendered uses ``name``; returns "" so a macro can call it inline."""
    if name not in OPTIONAL_IMPORTS and name not in HELPER_CLASSES:
        raise ValueError(f"{name!r} is not an import or helper class the torch module can add")
    needed = _needed.get()
    if needed is not None:
        needed.add(name)
    return ""


@contextmanager
def recording() -> Iterator[set[str]]:
    """Collect what the expressions rendered inside the block need."""
    needed: set[str] = set()
    token = _needed.set(needed)
    try:
        yield needed
    finally:
        _needed.reset(token)

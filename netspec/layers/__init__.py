"""The layer catalogue.

Each layer type is one pydantic class in one of these modules, with its shape rule, parameter
count and MACs beside its schema. Defining a class with ``type: Literal['name']`` registers it;
the spec's discriminated union, the JSON Schema, the docs and the catalogue tests pick it up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from netspec.layers import (  # noqa: F401  (defining a class registers it)
    activations,
    attention,
    conv,
    core,
    layout,
    learned,
    merge,
    normalization,
    pooling,
    recurrent,
)
from netspec.layers.base import (
    LAYER_REGISTRY,
    Analysis,
    Layer,
    LayerInput,
    Shape,
    ShapeIssue,
    Window,
    fmt_shape,
)

if TYPE_CHECKING:  # a union of the registered layer types, made at run time: to a type checker, a Layer
    AnyLayer = Layer
else:
    AnyLayer = Annotated[Union[tuple(LAYER_REGISTRY.values())], Field(discriminator="type")]  # noqa: UP007

__all__ = ["LAYER_REGISTRY", "AnyLayer", "Analysis", "Layer", "LayerInput", "Shape", "ShapeIssue",
           "Window", "fmt_shape"]

"""What an importer recovers from a framework's model, before it is written as a spec: the tree of
module instances, each one's forward as steps (its own layers, uses of its child modules, and the
operations its code applies), with the names the framework's state dict uses.

An importer (the torch backend's traces each module's forward with its children as leaves) builds
this; netspec.importing.structure turns it into module definitions, params, repeats and YAML. It
holds no framework object: only names, catalogue layer fields and the structure between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INPUT = "input"  # what a step names to take the module's input, as a spec's module does


@dataclass
class Step:
    """One thing a module's forward does: a catalogue layer (``layer``: its type and fields, no
    name or inputs) or a use of a child module (``child``). ``name`` is the attribute the state
    dict names it by (``conv1``, ``0``), or for an operation of the code, a name of its own
    (``add``); ``inputs`` are earlier steps' names or INPUT."""

    name: str
    inputs: list[str]
    layer: dict[str, Any] | None = None
    child: Instance | None = None

    @property
    def kind(self) -> str:
        """The layer's type, or the child's definition kind (for grouping and messages)."""
        if self.child is not None:
            return f"module {self.child.kind}"
        assert self.layer is not None
        return str(self.layer["type"])


@dataclass
class Instance:
    """One module of the model: ``path`` is its state-dict prefix (``layer1.0``, "" for the
    model), ``kind`` its class's name (``Bottleneck``), ``sequential`` whether it is a chain its
    children are numbered in (nn.Sequential)."""

    path: str
    kind: str
    steps: list[Step] = field(default_factory=list)
    sequential: bool = False

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

"""The checked network as a tree of module uses: each use of a module (``layer2.0``, a
``bottleneck``), the repeated use it belongs to (``layer2``, ×4), the layers it holds and its
nested uses, with their parameters and MACs added up, as torchinfo's hierarchical summary shows
them; a spec written in ``blocks:`` gives one node per block, a single-use sequential module.
``netspec check --json`` writes it under ``modules``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netspec.analysis.checker import CheckedLayer, CheckedNet


@dataclass
class ModuleNode:
    path: str  # its scope: "layer2.0", or a repeated use's name, "layer2"
    module: str  # the definition it uses
    params: dict[str, Any] | None  # the values this use gives the module's params (None for a repeated use)
    repeat: int | None = None  # a repeated use: how many repetitions (its children)
    layers: list[CheckedLayer] = field(default_factory=list)  # its own layers, nested uses' left out
    children: list[ModuleNode] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(cl.params + cl.non_trainable for cl in self.layers) + sum(c.total_params for c in self.children)

    @property
    def total_macs(self) -> int:
        return sum(cl.macs for cl in self.layers) + sum(c.total_macs for c in self.children)

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "module": self.module, "params": self.params, "repeat": self.repeat,
                "total_params": self.total_params, "total_macs": self.total_macs,
                "layers": [cl.name for cl in self.layers], "children": [c.as_json() for c in self.children]}


def module_tree(net: CheckedNet) -> list[ModuleNode]:
    """The top-level module uses of ``net``, each with its layers and nested uses, in spec order."""
    if net.spec.blocks is not None:  # a block is a single-use sequential module: a node without params
        return [ModuleNode(block.name, block.name, {}, layers=[cl for cl in net.layers if cl.block == block.name])
                for block in net.spec.blocks]
    expansion = net.source.loaded.modules
    if expansion is None:
        return []
    nodes: dict[str, ModuleNode] = {}
    for instance in expansion.instances:
        if instance.group is not None and instance.group not in nodes:
            repetitions = sum(1 for other in expansion.instances if other.group == instance.group)
            nodes[instance.group] = ModuleNode(instance.group, instance.definition, None, repeat=repetitions)
        nodes[instance.path] = ModuleNode(instance.path, instance.definition, _plain(instance.params))
    groups = {instance.path: instance.group for instance in expansion.instances}
    roots: list[ModuleNode] = []
    for path, node in nodes.items():  # in expansion order, which is the spec's
        parent = nodes.get(groups[path]) if groups.get(path) else _enclosing(nodes, path)
        (parent.children if parent is not None else roots).append(node)
    for cl in net.layers:
        owner = _enclosing(nodes, cl.name, instances_only=groups)
        if owner is not None:
            owner.layers.append(cl)
    return roots


def _enclosing(nodes: dict[str, ModuleNode], name: str, instances_only: dict[str, Any] | None = None):
    """The deepest node whose scope holds ``name`` (``layer2.0`` holds ``layer2.0.conv1``)."""
    scope = name
    while "." in scope:
        scope = scope.rpartition(".")[0]
        node = nodes.get(scope)
        if node is not None and (instances_only is None or scope in instances_only):
            return node
    return None


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """A use's param values as JSON takes them (numbers, flags, text; tuples as lists)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

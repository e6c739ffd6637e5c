"""The module tree of a flat graph whose nodes note the modules that made them.

PyTorch's ONNX exporter writes on every node the path of module instances it ran in
(``pkg.torch.onnx.name_scopes``: ``layer1``, ``layer1.0``, ``layer1.0.conv1``) and their classes
(``...class_hierarchy``). That is the tree netspec.importing.tree describes, flattened: here it is
put back, so that netspec.importing.structure finds the repeated blocks and writes them once.

A node becomes a layer of the module that holds it, named
- by the module its weights are named after (``layer1.0.conv1.weight``: ``conv1`` of ``layer1.0``),
  which keeps a convolution named as it was when the exporter folded the batch norm after it in;
- else by the module it is alone in, one call long (``relu``; a second call ``relu_1``);
- else by its layer's type (a residual's ``add``).
Every other module is an instance, applied where its nodes run. What does not fit a tree of
modules, each taking one tensor and giving one (a module run twice, two tensors coming in), is
refused with a ``NotATree`` that says where, and the caller writes a flat list instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from netspec.importing.tree import INPUT, Instance, Step


class NotATree(Exception):
    """The graph's notes do not make a tree of modules (the message says where)."""


@dataclass
class ScopedNode:
    """One node of the graph as a catalogue layer: ``modules`` the (path, class name) of each module
    it ran in, from the model down; ``weights_of`` the module its weights are named after, if any;
    ``inputs`` and ``output`` the graph's value names."""

    modules: list[tuple[str, str]]
    layer: dict[str, Any]
    weights: dict[str, Any]
    inputs: list[str]
    output: str
    weights_of: str | None = None
    owner: list[tuple[str, str]] = field(default_factory=list)  # the modules down to the one it is a layer of
    name: str | None = None  # the name the layer keeps, where a module gives it one


def _short(kind: str) -> str:
    return kind.rsplit(".", 1)[-1] or "Module"


def _attribute(path: str) -> str:
    return path.rsplit(".", 1)[-1]


class ScopedTree:
    """Puts a scoped graph's nodes back into their modules (see the module docstring)."""

    def __init__(self, nodes: list[ScopedNode], graph_input: str, graph_output: str) -> None:
        if not nodes or any(not n.modules for n in nodes):
            raise NotATree("the file does not note the modules its nodes came from")
        self.nodes, self.graph_input, self.graph_output = nodes, graph_input, graph_output
        self.state: dict[str, Any] = {}  # the spec's state dict, named by the tree
        self.last_use: dict[str, int] = {graph_output: len(nodes)}  # a value -> the last node that takes it
        for index, node in enumerate(nodes):
            for value in node.inputs:
                self.last_use[value] = max(self.last_use.get(value, -1), index)
        self.position = {id(node): index for index, node in enumerate(nodes)}

    def build(self) -> tuple[Instance, dict[str, Any]]:
        self._assign_owners()
        root_path, root_kind = self.nodes[0].owner[0] if self.nodes[0].owner else self.nodes[0].modules[0]
        instance = self._instance(root_path, root_kind, 0, self.nodes, self.graph_input)
        last = self.nodes[-1]
        if last.output != self.graph_output:
            raise NotATree("the graph's output is not its last node")
        return instance, self.state

    def _assign_owners(self) -> None:
        paths = [tuple(p for p, _ in n.modules) for n in self.nodes]
        deeper = {path[i] for path in paths for i in range(len(path) - 1)}  # modules that hold others
        runs: Counter[int] = Counter()  # the first node of a call -> the nodes in that call
        starts: list[int] = []
        for index, path in enumerate(paths):
            start = index if index == 0 or paths[index - 1] != path else starts[-1]
            starts.append(start)
            runs[start] += 1
        for index, node in enumerate(self.nodes):
            stack = [p for p, _ in node.modules]
            if node.weights_of:
                holder = node.weights_of.rpartition(".")[0]
                if holder not in stack:
                    raise NotATree(f"{node.weights_of}: its weights are used outside the module that holds them")
                node.owner = node.modules[:stack.index(holder) + 1]
                node.name = _attribute(node.weights_of)
            elif len(stack) > 1 and stack[-1] not in deeper and runs[starts[index]] == 1:
                node.owner, node.name = node.modules[:-1], _attribute(stack[-1])  # a module that is one layer
            else:
                node.owner = node.modules

    def _instance(self, path: str, kind: str, depth: int, nodes: list[ScopedNode], source: str) -> Instance:
        """The module at ``path`` from its nodes (in the graph's order); ``source`` the value it takes."""
        where = path or "the model"
        names: dict[str, str] = {source: INPUT}  # a value -> the step that makes it
        steps: list[Step] = []
        taken: set[str] = set()
        applied: set[str] = set()
        index = 0
        while index < len(nodes):
            node = nodes[index]
            if len(node.owner) == depth + 1:
                name = self._fresh(node.name or str(node.layer["type"]), taken)
                steps.append(Step(name, [self._source(names, v, where) for v in node.inputs], node.layer))
                for key, value in node.weights.items():
                    self.state[f"{path}.{name}.{key}" if path else f"{name}.{key}"] = value
                names[node.output] = name
                index += 1
                continue
            child_path, child_kind = node.owner[depth + 1]
            end = index
            while end < len(nodes) and len(nodes[end].owner) > depth + 1 and \
                    nodes[end].owner[depth + 1][0] == child_path:
                end += 1
            run = nodes[index:end]
            if child_path in applied:
                raise NotATree(f"{child_path}: the module runs twice (or its nodes are apart)")
            applied.add(child_path)
            made = {n.output for n in run}
            coming = list(dict.fromkeys(v for n in run for v in n.inputs if v not in made))
            first = run[0]
            if len(coming) > 1 and first.layer["type"] == "concat" and set(first.inputs) == set(coming) and \
                    len(run) > 1 and all(v not in n.inputs for v in coming for n in run[1:]):
                # a module that first joins the tensors it is given (DenseNet's layers): its caller joins them
                joined = self._fresh("concat", taken)
                steps.append(Step(joined, [self._source(names, v, where) for v in first.inputs], first.layer))
                names[first.output] = joined
                run, coming = run[1:], [first.output]
            if len(coming) != 1:
                raise NotATree(f"{child_path}: the module takes {len(coming)} tensors; a spec's module takes one")
            after = self.position[id(run[-1])]
            leaving = [n.output for n in run if self.last_use.get(n.output, -1) > after]
            if leaving != [run[-1].output]:
                raise NotATree(f"{child_path}: what the module gives is not its last node's output")
            child = self._instance(child_path, child_kind, depth + 1, run, coming[0])
            name = _attribute(child_path)
            taken.add(name)
            steps.append(Step(name, [self._source(names, coming[0], where)], child=child))
            names[run[-1].output] = name
            index = end
        chain = all(s.inputs == [INPUT if i == 0 else steps[i - 1].name] for i, s in enumerate(steps))
        if chain and steps and all(s.name.isdigit() for s in steps):  # an nn.Sequential, or a subclass of it
            return Instance(path, _short(kind), self._numbered(steps), sequential=True)
        return Instance(path, _short(kind), steps)

    @staticmethod
    def _numbered(steps: list[Step]) -> list[Step]:
        """A chain numbered as an nn.Sequential is, where the graph lacks some of its modules (a
        batch norm folded into the convolution before it, a dropout inference skips): identity
        layers in their places, so that the modules after them keep their numbers and weights."""
        by_number = {int(s.name): s for s in steps}
        filled = []
        for number in range(max(by_number) + 1):
            step = by_number.get(number, Step(str(number), [], {"type": "identity"}))
            filled.append(Step(step.name, [INPUT if number == 0 else str(number - 1)], step.layer, step.child))
        return filled

    @staticmethod
    def _source(names: dict[str, str], value: str, where: str) -> str:
        if value not in names:
            raise NotATree(f"{where}: a node takes a value made outside the module")
        return names[value]

    @staticmethod
    def _fresh(stem: str, taken: set[str]) -> str:
        name, number = stem, 1
        while name in taken:
            name, number = f"{stem}_{number}", number + 1
        taken.add(name)
        return name

"""`netspec diff A B`: what differs between two checked networks, layer by layer, and how it adds
up: layers added or removed, changed settings, changed output shapes and parameter counts, and
the totals. Framework-free.

Layers are paired by name in network order (difflib's longest matching runs); within a run that
does not match, layers of the same type are paired in order as renamed, the rest are added or
removed. Every parameter difference is attributed to a layer, so the per-layer deltas add up to
the difference in totals.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

from netspec.analysis.checker import CheckedLayer, CheckedNet
from netspec.layers import fmt_shape

JSON_FORMAT_VERSION = 1
SENTENCE_LAYERS = 8  # layers the one-sentence explanation names, largest change first


@dataclass
class LayerDiff:
    status: str  # same, changed, renamed, added, removed
    name_a: str | None
    name_b: str | None
    type_a: str | None
    type_b: str | None
    shape_a: str | None
    shape_b: str | None
    params_a: int
    params_b: int
    settings: dict[str, list[Any]] = field(default_factory=dict)  # field: [value in A, value in B]

    @property
    def params_delta(self) -> int:
        return self.params_b - self.params_a


@dataclass
class NetDiff:
    name_a: str
    name_b: str
    input_a: str
    input_b: str
    layers: list[LayerDiff]
    totals_a: dict[str, int]
    totals_b: dict[str, int]

    @property
    def changed(self) -> list[LayerDiff]:
        return [d for d in self.layers if d.status != "same"]

    def explanation(self) -> str:
        """One sentence on where the parameter difference comes from."""
        delta = self.totals_b["trainable_params"] - self.totals_a["trainable_params"]  # as each layer's are
        if not delta:
            return f"{self.name_b} and {self.name_a} have the same number of trainable parameters."
        movers = [d for d in self.layers if d.params_delta]
        movers.sort(key=lambda d: -abs(d.params_delta))
        parts = [f"{d.name_b or d.name_a} {d.params_delta:+,}" for d in movers[:SENTENCE_LAYERS]]
        if len(movers) > SENTENCE_LAYERS:  # a graph of hundreds of layers: the largest changes, and a count
            parts.append(f"and {len(movers) - SENTENCE_LAYERS} more layers")
        more = "more" if delta > 0 else "fewer"
        return f"{self.name_b} has {abs(delta):,} {more} trainable parameters than {self.name_a}: {', '.join(parts)}."

    def to_json(self) -> dict[str, Any]:
        return {"format": JSON_FORMAT_VERSION, "a": self.name_a, "b": self.name_b,
                "input": [self.input_a, self.input_b],
                "layers": [{**asdict(d), "params_delta": d.params_delta} for d in self.layers],
                "totals": {key: [self.totals_a[key], self.totals_b[key]] for key in self.totals_a},
                "explanation": self.explanation()}


def _settings(cl: CheckedLayer) -> dict[str, Any]:
    return cl.layer.model_dump(mode="json", exclude={"name"})


def _totals(net: CheckedNet) -> dict[str, int]:
    t = net.totals
    return {"params": t.params, "trainable_params": t.trainable_params, "macs": t.macs,
            "memory_bytes": t.total_bytes}


def _pair(a: CheckedLayer | None, b: CheckedLayer | None) -> LayerDiff:
    settings: dict[str, list[Any]] = {}
    if a is not None and b is not None:
        sa, sb = _settings(a), _settings(b)
        settings = {key: [sa.get(key), sb.get(key)] for key in dict.fromkeys([*sa, *sb]) if sa.get(key) != sb.get(key)}
        shape_changed = a.output_shape != b.output_shape
        status = ("renamed" if a.name != b.name else
                  "changed" if settings or shape_changed or a.params != b.params else "same")
    else:
        status = "removed" if b is None else "added"
    return LayerDiff(status, a.name if a else None, b.name if b else None, a.type if a else None,
                     b.type if b else None, fmt_shape(a.output_shape) if a else None,
                     fmt_shape(b.output_shape) if b else None,
                     a.params if a else 0, b.params if b else 0, settings)


def diff_nets(a: CheckedNet, b: CheckedNet) -> NetDiff:
    names_a, names_b = [cl.name for cl in a.layers], [cl.name for cl in b.layers]
    matcher = difflib.SequenceMatcher(a=names_a, b=names_b, autojunk=False)
    layers: list[LayerDiff] = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            layers += [_pair(a.layers[i], b.layers[j]) for i, j in zip(range(a0, a1), range(b0, b1), strict=True)]
            continue
        left, right = list(a.layers[a0:a1]), list(b.layers[b0:b1])
        while left or right:  # pair same-type layers in order (renamed); the rest were added or removed
            if left and right and left[0].type == right[0].type:
                layers.append(_pair(left.pop(0), right.pop(0)))
            elif left and (not right or all(r.type != left[0].type for r in right)):
                layers.append(_pair(left.pop(0), None))
            else:
                layers.append(_pair(None, right.pop(0)))
    return NetDiff(a.spec.name, b.spec.name, fmt_shape(a.input_shape), fmt_shape(b.input_shape), layers,
                   _totals(a), _totals(b))


def table(diff: NetDiff, *, everything: bool = False):
    from rich.table import Table

    out = Table(title=f"{diff.name_a} → {diff.name_b}", title_justify="left")
    for column in ("layer", "", diff.name_a, diff.name_b, "trainable Δ"):
        out.add_column(column, justify="right" if column == "trainable Δ" else "left", overflow="fold")
    marks = {"same": "", "changed": "~", "renamed": "~", "added": "+", "removed": "−"}
    styles = {"added": "green", "removed": "red", "same": "dim"}
    if diff.input_a != diff.input_b:
        out.add_row("input", "~", diff.input_a, diff.input_b, "")
    for d in diff.layers:
        if d.status == "same" and not everything:
            continue
        a_text = "" if d.name_a is None else f"{d.type_a} → {d.shape_a}, {d.params_a:,}"
        b_text = "" if d.name_b is None else f"{d.type_b} → {d.shape_b}, {d.params_b:,}"
        for key, (va, vb) in d.settings.items():
            a_text += f"\n{key}: {va}"
            b_text += f"\n{key}: {vb}"
        name = d.name_b if d.name_a in (None, d.name_b) else (d.name_a if d.name_b is None
                                                                else f"{d.name_a} → {d.name_b}")
        out.add_row(name, marks[d.status], a_text, b_text, f"{d.params_delta:+,}" if d.params_delta else "",
                    style=styles.get(d.status))
    labels = {"params": "all params", "trainable_params": "trainable", "macs": "MACs",
              "memory_bytes": "memory (B)"}
    out.add_section()
    for key, label in labels.items():
        va, vb = diff.totals_a[key], diff.totals_b[key]
        out.add_row(f"[bold]{label}[/]", "" if va == vb else "~", f"{va:,}", f"{vb:,}",
                    f"{vb - va:+,}" if va != vb else "")
    return out

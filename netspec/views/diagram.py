"""`netspec draw`: a diagram of a checked network as a self-contained SVG (rendered from
templates/diagram.svg.j2), or PNG through CairoSVG.

Layers run left to right, one box each, coloured by kind; a box's height grows with the size of
its output, and it carries the layer's name, its settings, its output shape and its parameters.
A grouped convolution is drawn as the paper's towers: one stacked box per group. Named blocks are
shaded behind their layers, or drawn as one box each with ``by_block``. Framework-free.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from netspec.analysis.checker import CheckedLayer, CheckedNet
from netspec.errors import SetupError, UsageError
from netspec.layers import LAYER_REGISTRY, fmt_shape
from netspec.layers.base import NETWORK_INPUT

CATEGORY_COLOURS = {  # a layer class's category -> fill, stroke
    "convolution": ("#dbe9f6", "#3b6ea5"), "pooling": ("#e3f1df", "#4d8a3f"),
    "normalization": ("#f6ead6", "#b07a1f"), "linear": ("#efe1f3", "#7d4b8f"),
}
OTHER_COLOURS = ("#eeeeee", "#777777")
# categories drawn as thin bars: they change no shape worth a box
THIN_CATEGORIES = {"activation", "regularization", "reshape", "structure"}
ABBREVIATIONS = {"kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d", "out_channels": "",
                 "out_features": "", "output_size": "→", "p": "p=", "size": "n="}
BOX_WIDTH, THIN_WIDTH, GAP, MARGIN, TEXT_HEIGHT = 128, 30, 16, 24, 58
MAX_TOWERS = 4
NAME_CHARACTERS = 16  # of a scoped name that fit on a box; longer ones keep their end (…branch1.conv)


@dataclass
class Box:
    name: str
    type: str
    label: str
    shape: str
    params: int
    x: float
    y: float
    width: float
    height: float
    fill: str
    stroke: str
    towers: list[tuple[float, float]] = field(default_factory=list)  # (y, height) of each group's box
    thin: bool = False
    baseline: float = 0.0  # the line the box is centred on (its lane's, in a graph)
    shown_name: str = ""  # the name written on the box when the full (scoped) name is too long
    under: float = 0.0  # where the shape is written below the boxes of its lane


@dataclass
class Band:
    name: str
    x: float
    width: float


@dataclass
class Edge:
    """A graph's data flow from one box to another: the corners of its route, and the SVG path
    drawn along them (corners rounded)."""

    source: str
    target: str
    points: list[tuple[float, float]]

    @property
    def path(self) -> str:
        return _rounded_path(self.points)


@dataclass
class Diagram:
    title: str
    subtitle: str
    width: float
    height: float
    baseline: float
    boxes: list[Box]
    bands: list[Band]
    by_block: bool
    edges: list[Edge] | None = None  # a graph's edges; None: a chain, each box joined to the next


def colours(layer_type: str) -> tuple[str, str]:
    return CATEGORY_COLOURS.get(LAYER_REGISTRY[layer_type].category, OTHER_COLOURS)


def settings_label(cl: CheckedLayer) -> str:
    """The settings that differ from their defaults, compactly: "96 k11 s4" for a convolution."""
    layer = cl.layer
    parts = []
    for key, value in layer.model_dump(exclude={"name", "type", "groups", "activation", "inputs"}).items():
        info = type(layer).model_fields.get(key)
        if value is None or (info is not None and not info.is_required() and info.get_default() == value):
            continue
        if isinstance(value, (list, tuple)):
            value = value[0] if len(set(value)) == 1 else "×".join(map(str, value))
        prefix = ABBREVIATIONS.get(key, f"{key}=")
        parts.append(value if value in ("same", "valid") else f"{prefix}{value}")  # "same", not "psame"
    activation = getattr(layer, "activation", None)
    return " ".join(parts + ([f"+{activation}"] if activation else []))


def _height(cl: CheckedLayer) -> float:
    elements = math.prod(cl.output_shape) or 1
    return min(40 + 9 * math.log2(elements), 230)


def layout(net: CheckedNet, *, by_block: bool = False) -> Diagram:
    if not net.spec.is_chain:
        return _graph_layout(net, by_block=by_block)
    units: list[tuple[str, str, list[CheckedLayer]]] = []
    if by_block and net.spec.blocks is not None:
        for block in net.spec.blocks:
            members = [cl for cl in net.layers if cl.block == block.name]
            units.append((block.name, "block", members))
    else:
        units = [(cl.name, cl.type, [cl]) for cl in net.layers]
    tallest = max(_height(members[-1]) for _, _, members in units)
    baseline = MARGIN + 52 + tallest / 2 + 10  # boxes are centred on this line
    boxes, x = [], MARGIN
    for name, unit_type, members in units:
        last = members[-1]
        thin = unit_type in LAYER_REGISTRY and LAYER_REGISTRY[unit_type].category in THIN_CATEGORIES
        width = THIN_WIDTH if thin else BOX_WIDTH
        height = _height(last)
        fill, stroke, label = _box_text(unit_type, members)
        box = Box(name, unit_type, label, fmt_shape(last.output_shape), sum(cl.params for cl in members),
                  x, baseline - height / 2, width, height, fill, stroke, thin=thin, baseline=baseline,
                  under=baseline + tallest / 2 + 18)
        _add_towers(box, last, unit_type)
        boxes.append(box)
        x += width + GAP
    bands = [] if by_block or net.spec.blocks is None else _bands(net, boxes)
    width = x - GAP + MARGIN
    height = baseline + tallest / 2 + TEXT_HEIGHT + MARGIN + (22 if bands else 0)
    subtitle = _subtitle(net)
    return Diagram(net.spec.name, subtitle, width, height, baseline, boxes, bands, by_block)


def _graph_units(net: CheckedNet, by_block: bool) -> list[tuple[str, str, list[CheckedLayer], list[str]]]:
    """(name, type, layers, the units it takes) for each box of a graph: every layer, or with
    ``by_block`` every top-level layer and module use (its layers collapsed into one box)."""
    if not by_block:
        return [(cl.name, cl.type, [cl], [n for n in cl.inputs if n != NETWORK_INPUT]) for cl in net.layers]
    groups: dict[str, list[CheckedLayer]] = {}
    for cl in net.layers:
        groups.setdefault(cl.name.split(".")[0], []).append(cl)
    units = []
    for name, members in groups.items():
        inside = {cl.name for cl in members}
        inputs = [n.split(".")[0] for cl in members for n in cl.inputs if n not in inside and n != NETWORK_INPUT]
        unit_type = "block" if len(members) > 1 else members[0].type
        units.append((name, unit_type, members, list(dict.fromkeys(inputs))))
    return units


def _module_of(net: CheckedNet, name: str) -> str | None:
    """What a top-level module use is called on its box: its module, times its repeat."""
    expansion = net.source.loaded.modules
    uses = [i for i in expansion.instances if i.path == name or i.group == name] if expansion else []
    if not uses:
        return None
    return uses[0].definition + (f" ×{len(uses)}" if uses[0].group else "")


def _graph_layout(net: CheckedNet, *, by_block: bool) -> Diagram:
    """A graph left to right by depth (a layer's column is one past its deepest input), parallel
    branches in lanes one above the other, every edge drawn: straight to the next column, arched
    over the boxes it skips (a residual), slanted between lanes."""
    units = _graph_units(net, by_block)
    column: dict[str, int] = {}
    for name, _, _, inputs in units:
        column[name] = 1 + max((column[i] for i in inputs), default=-1)
    taken: dict[int, set[int]] = {}
    lane: dict[str, int] = {}
    for name, _, _, inputs in units:  # a branch stays in its first input's lane while it is free
        wanted = lane[inputs[0]] if inputs else 0
        free = taken.setdefault(column[name], set())
        lane[name] = next(n for n in itertools.count(wanted) if n not in free)
        free.add(lane[name])
    tallest = max(_height(members[-1]) for _, _, members, _ in units)
    lane_height = tallest + TEXT_HEIGHT + 2 * GAP
    widths: dict[int, float] = {}
    thin = {}
    for name, unit_type, _, _ in units:
        thin[name] = unit_type in LAYER_REGISTRY and LAYER_REGISTRY[unit_type].category in THIN_CATEGORIES
        widths[column[name]] = max(widths.get(column[name], 0), THIN_WIDTH if thin[name] else BOX_WIDTH)
    left: dict[int, float] = {}
    x: float = MARGIN
    for col in range(max(column.values()) + 1):
        left[col] = x
        x += widths.get(col, 0) + GAP
    top = MARGIN + 52 + tallest / 2 + 10 + 16  # room for the arches above the first lane
    routes = _Routes(left, widths, top, lane_height, tallest)
    boxes, by_name = [], {}
    for name, unit_type, members, _ in units:
        last = members[-1]
        baseline = routes.baseline(lane[name])
        height = _height(last)
        width: float = THIN_WIDTH if thin[name] else BOX_WIDTH
        fill, stroke, label = _box_text(unit_type, members)
        shown_type = (_module_of(net, name) or unit_type) if unit_type == "block" else unit_type
        box = Box(name, shown_type, label, fmt_shape(last.output_shape),
                  sum(cl.params for cl in members),
                  left[column[name]] + (widths[column[name]] - width) / 2, baseline - height / 2, width, height,
                  fill, stroke, thin=thin[name], baseline=baseline, under=baseline + tallest / 2 + 18,
                  shown_name=name if len(name) <= NAME_CHARACTERS else "…" + name[1 - NAME_CHARACTERS:])
        _add_towers(box, last, unit_type)
        boxes.append(box)
        by_name[name] = box
    edges = [Edge(source, name, routes.route(by_name[source], column[source], lane[source],
                                             by_name[name], column[name], lane[name]))
             for name, _, _, inputs in units for source in inputs]
    width = x - GAP + MARGIN
    height = top + (max(lane.values()) + 1) * lane_height - lane_height + tallest / 2 + TEXT_HEIGHT + MARGIN
    subtitle = _subtitle(net)
    return Diagram(net.spec.name, subtitle, width, height, top, boxes, [], by_block, edges)


class _Routes:
    """Edges run through the free space only, so none passes behind a box it does not join: along
    a box's own lane into the gap beside its column, up or down that gap, and along the channel
    between two lanes (or, for a skip within a lane, over its boxes) to the gap before the target."""

    def __init__(self, left: dict[int, float], widths: dict[int, float], top: float, lane_height: float,
                 tallest: float):
        self.left, self.widths, self.top = left, widths, top
        self.lane_height, self.tallest = lane_height, tallest

    def baseline(self, lane: int) -> float:
        return self.top + lane * self.lane_height

    def over(self, lane: int) -> float:
        """Above the lane's tallest box, below the text of the lane above."""
        return self.baseline(lane) - self.tallest / 2 - 12

    def between(self, upper: int) -> float:
        """Between lane ``upper``'s shapes and parameter counts and the arches over the next lane."""
        return self.baseline(upper) + self.tallest / 2 + 57

    def route(self, source: Box, source_column: int, source_lane: int, target: Box, target_column: int,
              target_lane: int) -> list[tuple[float, float]]:
        start, end = (source.x + source.width, source.baseline), (target.x, target.baseline)
        after = self.left[source_column] + self.widths[source_column] + GAP / 2  # the gap after the source
        before = self.left[target_column] - GAP / 2  # the gap before the target
        if source_lane == target_lane:
            if target_column - source_column == 1:
                return [start, end]
            level = self.over(target_lane)
        elif target_column - source_column == 1:  # the one gap between them
            return [start, (after, start[1]), (after, end[1]), end]
        else:  # along the channel on the target lane's side towards the source
            level = self.between(target_lane - 1 if target_lane > source_lane else target_lane)
        return [start, (after, start[1]), (after, level), (before, level), (before, end[1]), end]


def _rounded_path(points: list[tuple[float, float]], radius: float = 6.0) -> str:
    """An SVG path along ``points`` whose corners are rounded (a quadratic curve per corner)."""
    (x, y), *rest = points
    parts = [f"M {x:.1f} {y:.1f}"]
    for index, (cx, cy) in enumerate(rest[:-1]):
        px, py = points[index]
        nx, ny = rest[index + 1]
        r_in = min(radius, math.dist((px, py), (cx, cy)) / 2)
        r_out = min(radius, math.dist((cx, cy), (nx, ny)) / 2)
        ax, ay = _towards(cx, cy, px, py, r_in)
        bx, by = _towards(cx, cy, nx, ny, r_out)
        parts.append(f"L {ax:.1f} {ay:.1f} Q {cx:.1f} {cy:.1f} {bx:.1f} {by:.1f}")
    x, y = points[-1]
    parts.append(f"L {x:.1f} {y:.1f}")
    return " ".join(parts)


def _towards(x: float, y: float, to_x: float, to_y: float, distance: float) -> tuple[float, float]:
    length = math.dist((x, y), (to_x, to_y)) or 1.0
    return x + (to_x - x) * distance / length, y + (to_y - y) * distance / length


def _box_text(unit_type: str, members: list[CheckedLayer]) -> tuple[str, str, str]:
    """A box's fill and stroke colours and its label: a layer's settings, or a block's layer count
    and types."""
    last = members[-1]
    fill, stroke = colours(last.type if unit_type != "block" else _main_type(members))
    count = f"{len(members)} layer" + ("s" if len(members) > 1 else "")
    label = (f"{count}: " + ", ".join(dict.fromkeys(cl.type for cl in members))
             if unit_type == "block" else settings_label(last))
    return fill, stroke, label


def _subtitle(net: CheckedNet) -> str:
    totals = net.totals
    return (f"input {fmt_shape(net.input_shape)} · output {fmt_shape(net.output_shape)} · "
            f"{totals.trainable_params:,} trainable parameters · {totals.macs / 1e6:,.1f} M MACs")


def _add_towers(box: Box, last: CheckedLayer, unit_type: str) -> None:
    """The paper's two GPU towers: a grouped convolution drawn as one box per group (up to
    MAX_TOWERS; ResNeXt's 32 groups stay one box)."""
    groups = getattr(last.layer, "groups", 1) if unit_type != "block" else 1
    if 1 < groups <= MAX_TOWERS:
        tower_height = (box.height - 6 * (groups - 1)) / groups
        box.towers = [(box.y + i * (tower_height + 6), tower_height) for i in range(groups)]


def _main_type(members: list[CheckedLayer]) -> str:
    heaviest = max(members, key=lambda cl: cl.params)
    return heaviest.type if heaviest.params else members[0].type


def _bands(net: CheckedNet, boxes: list[Box]) -> list[Band]:
    bands = []
    by_name = {box.name: box for box in boxes}
    assert net.spec.blocks is not None  # called only for a spec with blocks
    for block in net.spec.blocks:
        members = [by_name[cl.name] for cl in net.layers if cl.block == block.name]
        start, end = members[0].x - GAP / 2 + 2, members[-1].x + members[-1].width + GAP / 2 - 2
        bands.append(Band(block.name, start, end - start))
    return bands


_env = jinja2.Environment(loader=jinja2.PackageLoader("netspec.views", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_svg(net: CheckedNet, *, by_block: bool = False) -> str:
    return _env.get_template("diagram.svg.j2").render(d=layout(net, by_block=by_block))


def write_diagram(net: CheckedNet, path: Path, *, by_block: bool = False, force: bool = False) -> Path:
    """Write the SVG, or a PNG (by the file's suffix), atomically (netspec.files.outputs)."""
    from netspec.files.outputs import Outputs, check_target

    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise UsageError.single(f"cannot draw to {path.name}: the diagram is an .svg or a .png",
                                hint="name the output file diagram.svg or diagram.png")
    check_target(path, force=force)
    svg = render_svg(net, by_block=by_block)
    if suffix == ".png":
        try:
            import cairosvg
        except (ImportError, OSError) as exc:  # OSError: the cairo library itself is missing
            raise SetupError.single(f"PNG output needs CairoSVG and the cairo library ({exc})",
                                    hint='pip install "netspec[draw]", or draw an .svg') from None
    with Outputs(force=force) as out:
        out.folder(path.parent)  # created when missing, as export and convert do
        tmp = out.file(path)
        if suffix == ".svg":
            Path(tmp).write_text(svg, encoding="utf-8")
        else:
            cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=tmp, scale=2)
    return path

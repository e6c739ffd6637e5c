"""`netspec draw`: a diagram of a checked network as a self-contained SVG (rendered from
templates/diagram.svg.j2), or PNG through CairoSVG.

Layers run left to right, one box each, coloured by kind; a box's height grows with the size of
its output, and it carries the layer's name, its settings, its output shape and its parameters.
A grouped convolution is drawn as the paper's towers: one stacked box per group. Named blocks are
shaded behind their layers, or drawn as one box each with ``by_block``. Framework-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from netspec.check import CheckedLayer, CheckedNet
from netspec.layers import LAYER_REGISTRY, fmt_shape

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


@dataclass
class Band:
    name: str
    x: float
    width: float


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


def colours(layer_type: str) -> tuple[str, str]:
    return CATEGORY_COLOURS.get(LAYER_REGISTRY[layer_type].category, OTHER_COLOURS)


def settings_label(cl: CheckedLayer) -> str:
    """The settings that differ from their defaults, compactly: "96 k11 s4" for a convolution."""
    layer = cl.layer
    parts = []
    for key, value in layer.model_dump(exclude={"name", "type", "groups", "activation"}).items():
        info = type(layer).model_fields.get(key)
        if value is None or (info is not None and not info.is_required() and info.get_default() == value):
            continue
        if isinstance(value, (list, tuple)):
            value = value[0] if len(set(value)) == 1 else "×".join(map(str, value))
        prefix = ABBREVIATIONS.get(key, f"{key}=")
        parts.append(f"{prefix}{value}")
    activation = getattr(layer, "activation", None)
    return " ".join(parts + ([f"+{activation}"] if activation else []))


def _height(cl: CheckedLayer) -> float:
    elements = math.prod(cl.output_shape) or 1
    return min(40 + 9 * math.log2(elements), 230)


def layout(net: CheckedNet, *, by_block: bool = False) -> Diagram:
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
        fill, stroke = colours(last.type if unit_type != "block" else _main_type(members))
        count = f"{len(members)} layer" + ("s" if len(members) > 1 else "")
        label = (f"{count}: " + ", ".join(dict.fromkeys(cl.type for cl in members))
                 if unit_type == "block" else settings_label(last))
        box = Box(name, unit_type, label, fmt_shape(last.output_shape), sum(cl.params + cl.non_trainable
                                                                           for cl in members),
                  x, baseline - height / 2, width, height, fill, stroke, thin=thin)
        groups = getattr(last.layer, "groups", 1) if unit_type != "block" else 1
        if groups > 1:
            tower_height = (height - 6 * (groups - 1)) / groups
            box.towers = [(box.y + i * (tower_height + 6), tower_height) for i in range(groups)]
        boxes.append(box)
        x += width + GAP
    bands = [] if by_block or net.spec.blocks is None else _bands(net, boxes)
    width = x - GAP + MARGIN
    height = baseline + tallest / 2 + TEXT_HEIGHT + MARGIN + (22 if bands else 0)
    totals = net.totals
    subtitle = (f"input {fmt_shape(net.input_shape)} · output {fmt_shape(net.output_shape)} · "
                f"{totals.params:,} parameters · {totals.macs / 1e6:,.1f} M MACs")
    return Diagram(net.spec.name, subtitle, width, height, baseline, boxes, bands, by_block)


def _main_type(members: list[CheckedLayer]) -> str:
    heaviest = max(members, key=lambda cl: cl.params)
    return heaviest.type if heaviest.params else members[0].type


def _bands(net: CheckedNet, boxes: list[Box]) -> list[Band]:
    bands = []
    by_name = {box.name: box for box in boxes}
    for block in net.spec.blocks:
        members = [by_name[cl.name] for cl in net.layers if cl.block == block.name]
        start, end = members[0].x - GAP / 2 + 2, members[-1].x + members[-1].width + GAP / 2 - 2
        bands.append(Band(block.name, start, end - start))
    return bands


_env = jinja2.Environment(loader=jinja2.PackageLoader("netspec", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_svg(net: CheckedNet, *, by_block: bool = False) -> str:
    return _env.get_template("diagram.svg.j2").render(d=layout(net, by_block=by_block))


def write_diagram(net: CheckedNet, path: Path, *, by_block: bool = False, force: bool = False) -> Path:
    """Write the SVG, or a PNG (by the file's suffix), atomically (netspec.outputs)."""
    from netspec.errors import SpecError
    from netspec.outputs import Outputs, check_target

    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise SpecError.single(f"cannot draw to {path.name}: the diagram is an .svg or a .png",
                               hint="name the output file diagram.svg or diagram.png")
    check_target(path, force=force)
    svg = render_svg(net, by_block=by_block)
    if suffix == ".png":
        try:
            import cairosvg
        except (ImportError, OSError) as exc:  # OSError: the cairo library itself is missing
            raise SpecError.single(f"PNG output needs CairoSVG and the cairo library ({exc})",
                                   hint='pip install "netspec[draw]", or draw an .svg') from None
    with Outputs(force=force) as out:
        out.folder(path.parent)  # created when missing, as export and convert do
        tmp = out.file(path)
        if suffix == ".svg":
            Path(tmp).write_text(svg, encoding="utf-8")
        else:
            cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=tmp, scale=2)
    return path

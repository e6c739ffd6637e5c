"""Presenting a CheckedNet: the terminal table of ``netspec check`` and its stable JSON form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netspec import __version__
from netspec.analysis.checker import CheckedNet
from netspec.analysis.tree import module_tree
from netspec.errors import shown
from netspec.layers import Shape, fmt_shape
from netspec.layers.base import channels_last, layout_of

JSON_FORMAT_VERSION = 1


def display_shape(shape: Shape, layout: str) -> str:
    """A shape as the spec's author thinks of it: C×H×W, or H×W×C for channels-last specs."""
    return fmt_shape(channels_last(shape) if layout == "channels_last" else shape)


def human_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def type_label(layer) -> str:
    activation = getattr(layer, "activation", None)
    return f"{layer.kind}+{activation}" if activation else layer.kind


def _line_label(location, line_file: str) -> str:
    """The layer's line, with its file's name when it is not the table's line file."""
    if not location.line:
        return ""
    if location.file != line_file:
        return escape(f"{shown(Path(location.file).name)}:{location.line}")
    return str(location.line)


def escape(text: str) -> str:
    """Text for a rich table cell, shown as written (never read as markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _print_unwrapped(console, renderable) -> None:
    """Print at the table's full width when the console is narrower, on a terminal too: rich would
    otherwise cut figures to '…' (a narrow terminal then wraps the lines; no figure is lost)."""
    saved = console.width
    # a table is never wider than its contents, so a wide console prints it whole; measuring it
    # first would render every cell twice (a 400-layer graph's table took twice as long)
    console.width = max(saved, 1 << 14)
    try:
        console.print(renderable)
    finally:
        console.width = saved


def _module_uses(net: CheckedNet) -> dict[str, str]:
    """Each top-level module use and what it is: "basic_block ×2"."""
    expansion = net.source.loaded.modules
    found: dict[str, list] = {}
    for instance in expansion.instances if expansion else ():
        top = (instance.group or instance.path)
        if "." not in top:
            found.setdefault(top, []).append(instance)
    return {name: uses[0].definition + (f" ×{len(uses)}" if uses[0].group else "") for name, uses in found.items()}


def _rf_label(rf: tuple[int, ...] | None) -> str:
    if rf is None:
        return "all"
    return str(rf[0]) if len(set(rf)) == 1 else fmt_shape(rf)


def summary_json(net: CheckedNet) -> dict[str, Any]:
    """A stable, versioned document; shapes are channels-first and exclude the batch dimension."""
    totals = net.totals
    return {
        "format": JSON_FORMAT_VERSION,
        "netspec_version": __version__,
        "spec": {"name": net.spec.name, "file": net.source.file, "extends": net.source.loaded.chain[1:]},
        "input_shape": list(net.input_shape),
        "outputs": net.output_names,
        "shape_layout": "channels_first",
        "batch": net.batch,
        "layers": [
            {
                "index": cl.index,
                "name": cl.name,
                "type": cl.type,
                "block": cl.block,
                "inputs": list(cl.inputs),
                "scope": cl.name.rpartition(".")[0] or None,  # the module use it belongs to: "layer1.0"
                "activation": getattr(cl.layer, "activation", None),
                "input_shape": list(cl.input_shape),
                "output_shape": list(cl.output_shape),
                "output_layout": layout_of(cl.output_shape).name,  # "C×H×W"; "L×D" for tokens
                "params": cl.params,
                "non_trainable_params": cl.non_trainable,
                "macs": cl.macs,
                "activation_elements": cl.activation_elements,
                "receptive_field": list(cl.receptive_field) if cl.receptive_field else None,
                "line": cl.location.line or None,
                "written": net.written(cl),  # the fields written as ${...}: {"out_channels": "${planes * 4}"}
            }
            for cl in net.layers
        ],
        # the module uses as a tree, with their parameters and MACs added up (netspec.analysis.tree)
        "modules": [node.as_json() for node in module_tree(net)],
        "totals": {
            "params": totals.params,
            "trainable_params": totals.trainable_params,
            "non_trainable_params": totals.non_trainable_params,
            "macs": totals.macs,
            "memory_bytes": {
                "input": totals.input_bytes,
                "activations_forward_backward": totals.activation_bytes,
                "activations_inference_peak": totals.inference_peak_bytes,
                "params": totals.param_bytes,
                "total": totals.total_bytes,
            },
        },
    }


LAYER_COLUMNS = ("Layer", "Type", "Output", "Params", "MACs", "RF", "Ln")
OPTIONAL_COLUMNS = ("Ln", "RF", "MACs")  # left out in this order on a terminal too narrow for the table


def _layer_table(net: CheckedNet, layout: str, line_file: str, columns) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, caption_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("Layer", "Type") else "right", no_wrap=True,
                         style="dim" if column == "Ln" else None)
    block = None
    uses = _module_uses(net)
    for cl in net.layers:
        scope = cl.name.split(".")[0] if "." in cl.name else None
        group = cl.block or scope
        if group != block and group is not None:
            what = uses.get(scope, "") if scope else ""
            # what the use is goes in the Type column: in the Layer column it widened the table
            table.add_row(f"[bold cyan]{escape(group)}[/]", escape(what.strip()), *[""] * (len(columns) - 2))
        block = group
        indent = "  " if group else ""
        cells = {"Layer": indent + cl.name, "Type": type_label(cl.layer),
                 "Output": display_shape(cl.output_shape, layout), "Params": f"{cl.params:,}" if cl.params else "–",
                 "MACs": human_count(cl.macs) if cl.macs else "–", "RF": _rf_label(cl.receptive_field),
                 "Ln": _line_label(cl.location, line_file)}
        table.add_row(*(cells[column] for column in columns))
    return table


def render_summary(net: CheckedNet, console) -> None:
    """Print the per-layer table and totals with rich (imported here: only the CLI needs it).

    File names come from the user and may hold anything: they are shown escaped (:func:`shown`) and
    as plain text, never as rich markup. When the output is not a terminal (a pipe, a file, a test)
    nothing is wrapped or cut to the terminal's width: the header is one line and the table as wide
    as its contents, so what a script reads does not depend on COLUMNS or the folder's path."""
    from rich.table import Table
    from rich.text import Text

    layout = net.spec.input.layout
    tokens = " tokens (L×D)" if layout == "tokens" else ""
    header = Text.assemble((shown(net.spec.name), "bold"), f"  {shown(net.source.file)}  input "
                           f"{display_shape(net.input_shape, layout)}{tokens}  batch {net.batch}")
    console.print(header, soft_wrap=not console.is_terminal)
    # Line numbers refer to one file when they can: the spec's, or the one base all layers come from.
    files = {cl.location.file for cl in net.layers if cl.location.line}
    line_file = files.pop() if len(files) == 1 else net.source.file
    caption = Text(f"Ln: lines in {shown(line_file)}") if line_file != net.source.file else None
    table = _layer_table(net, layout, line_file, LAYER_COLUMNS)
    if console.is_terminal:  # a narrow terminal: leave out the least needed columns rather than wrap
        for left_out in range(1, len(OPTIONAL_COLUMNS) + 1):
            natural = console.measure(table, options=console.options.update_width(1 << 14)).maximum
            if natural <= console.width:
                break
            dropped = OPTIONAL_COLUMNS[:left_out]
            table = _layer_table(net, layout, line_file, [c for c in LAYER_COLUMNS if c not in dropped])
            table.caption = f"{', '.join(dropped)} left out to fit {console.width} columns (--json has them)"
            if "Ln" in dropped:
                caption = None
    _print_unwrapped(console, table)
    if caption is not None:  # below the table, not inside it: a long path would wrap at the table's width
        console.print(caption, soft_wrap=not console.is_terminal)

    t = net.totals
    rows = [
        ("Total params", f"{t.params:,}"),
        ("Trainable params", f"{t.trainable_params:,}"),
        ("Non-trainable params", f"{t.non_trainable_params:,}"),
        (f"MACs per {'image' if len(net.input_shape) == 3 else 'sample'}", f"{t.macs:,} ({human_count(t.macs)})"),
        (f"Input size (batch {net.batch})", human_bytes(t.input_bytes)),
        ("Activations, forward + backward", human_bytes(t.activation_bytes)),
        ("Activations, inference peak", human_bytes(t.inference_peak_bytes)),
        ("Params size", human_bytes(t.param_bytes)),
        ("Estimated total (float32)", human_bytes(t.total_bytes)),
    ]
    totals = Table.grid(padding=(0, 2))
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    for label, value in rows:
        totals.add_row(label, value)
    _print_unwrapped(console, totals)

"""`netspec report RUN_DIR`: one static HTML page for a training run that opens offline: the
spec's summary table, the diagram (inline SVG), the learning curves (an embedded PNG), the final
and best metrics, and the exact command, options and versions. Framework-free.

The network is rebuilt from the spec recorded in the run's run.json (with ``extends`` and
``${params}`` already resolved), so the page shows what was trained even if the spec file has
changed since.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from netspec.analysis.checker import CheckedNet, check_file
from netspec.errors import RunError
from netspec.train.rundir import RunDir

_env = jinja2.Environment(loader=jinja2.PackageLoader("netspec.views", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def recorded_net(info: dict[str, Any]) -> CheckedNet:
    """The network as trained: the resolved spec stored in run.json, checked again."""
    import yaml

    spec = info.get("spec")
    if not isinstance(spec, dict):
        raise RunError.single("the run's run.json holds no spec", hint="was it written by netspec train?")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recorded-spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
        shape = tuple(info["input_shape"]) if info.get("input_shape") else None
        return check_file(path, [], input_shape=shape)


RUN_FILES = ("run.json", "metrics.jsonl", "curves.png")


def check_run_files(run: Path) -> None:
    """The report reads and embeds files of the run folder: never what a symbolic link there
    points to outside of it (a curves.png linking to a secret would end up in the HTML)."""
    try:
        root = run.resolve(strict=True)
    except OSError:
        return  # RunDir.read_info names a missing folder
    for name in RUN_FILES:
        path = run / name
        if not path.is_symlink():
            continue
        target = path.resolve()
        if not target.is_relative_to(root):
            raise RunError.single(f"refusing to read {path}: it is a symbolic link out of the run folder "
                                  f"(to {target})", hint="netspec report only reads the run's own files; "
                                                         "replace the link with the file itself")


MAX_CURVES_BYTES = 16 << 20  # netspec draws about 100 KB; a larger file is not its plot


def _curves_png(run: Path, records: list[dict[str, Any]], title: str) -> str | None:
    """The run's curves.png as base64, drawn now if the run has none yet, or anew when the file
    there is far larger than any plot netspec draws (it is then never read into memory)."""
    path = run / "curves.png"
    usable = path.is_file() and path.stat().st_size <= MAX_CURVES_BYTES
    if not usable and records:
        from netspec.train.plot import plot_curves

        with tempfile.TemporaryDirectory() as folder:
            drawn = plot_curves(records, Path(folder) / "curves.png", title=title)
            return base64.b64encode(drawn.read_bytes()).decode("ascii")
    return base64.b64encode(path.read_bytes()).decode("ascii") if usable else None


def render_report(run: Path) -> str:
    from netspec.analysis.report import type_label
    from netspec.views.diagram import render_svg

    check_run_files(run)
    info = RunDir.read_info(run)
    records = RunDir.metrics_of(run)
    net = recorded_net(info)
    best = max(records, key=lambda r: r["val_top1"]) if records else None
    rows = [{"name": cl.name, "type": type_label(cl.layer), "block": cl.block or "",
             "shape": "×".join(map(str, cl.output_shape)), "params": cl.params, "macs": cl.macs}
            for cl in net.layers]
    command = info.get("command") or []
    return _env.get_template("run_report.html.j2").render(
        name=net.spec.name, description=net.spec.description, run=str(run), backend=info.get("backend", "?"),
        command=" ".join(["netspec", *command[1:]]) if command else "(not recorded)",
        overrides=info.get("overrides", []), versions=info.get("versions", {}),
        netspec_version=info.get("netspec_version", "?"), totals=net.totals, rows=rows,
        svg=render_svg(net), curves=_curves_png(run, records, f"{net.spec.name} ({info.get('backend', '?')})"),
        records=records, last=records[-1] if records else None, best=best,
        recipe=json.dumps(info["spec"].get("training", {}), indent=2),
        data=json.dumps(info["spec"].get("data", {}), indent=2))


def write_report(run: Path, output: Path | None = None, *, force: bool = False) -> Path:
    """Write the run's report (default: RUN/report.html); a path that cannot be written is refused
    before the run is read."""
    from netspec.files.outputs import check_target, write_text

    output = Path(run) / "report.html" if output is None else output
    check_target(output, force=force)
    write_text(output, render_report(run), force=force)
    return output

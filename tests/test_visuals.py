"""Diagrams, diffs and the HTML run report: each spec's diagram agrees with the checker, the diff of
each pair of seed variants adds up to the checker's numbers, and a real run's report renders in
headless Chromium."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from netspec.analysis.checker import check_file
from netspec.cli import app
from netspec.layers import fmt_shape
from netspec.views.diagram import MAX_TOWERS

from .conftest import ALL_SPECS, BAD_SPECS_DIR, SPECS_DIR, ZOO_SPECS

GRAPH = BAD_SPECS_DIR / "graph.yaml"

SVG = "{http://www.w3.org/2000/svg}"


def groups_of(root, cls):
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]


@pytest.mark.parametrize("spec", [*ALL_SPECS, GRAPH, *ZOO_SPECS], ids=lambda p: p.name)
def test_each_spec_draws_one_element_per_layer_with_the_checkers_numbers(spec, tmp_path):
    out = tmp_path / "net.svg"
    result = CliRunner().invoke(app, ["draw", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(out.read_text())  # well-formed, standalone SVG
    assert root.tag == f"{SVG}svg" and float(root.get("width")) > 0
    net = check_file(spec)
    layers = groups_of(root, "layer")
    assert [g.get("data-name") for g in layers] == [cl.name for cl in net.layers]
    for g, cl in zip(layers, net.layers, strict=True):
        assert g.get("data-shape") == fmt_shape(cl.output_shape)
        assert int(g.get("data-params")) == cl.params  # trainable, as check's Params column
        towers = [r for r in g.iter(f"{SVG}rect") if r.get("class") == "tower"]
        groups = getattr(cl.layer, "groups", 1)
        assert len(towers) == (groups if 1 < groups <= MAX_TOWERS else 0)
    assert f"{net.totals.trainable_params:,} trainable parameters" in out.read_text()


def test_a_graph_is_drawn_with_every_edge_and_its_branches_side_by_side(tmp_path):
    out = tmp_path / "graph.svg"
    assert CliRunner().invoke(app, ["draw", str(GRAPH), "-o", str(out)]).exit_code == 0
    root = ET.fromstring(out.read_text())
    net = check_file(GRAPH)
    edges = {(p.get("data-from"), p.get("data-to")) for p in root.iter(f"{SVG}path") if p.get("class") == "edge"}
    assert edges == {(source, cl.name) for cl in net.layers for source in cl.inputs if source != "input"}
    boxes = {g.get("data-name"): g for g in groups_of(root, "layer")}

    def top(name):
        return float(next(boxes[name].iter(f"{SVG}rect")).get("y"))

    def left(name):
        return float(next(boxes[name].iter(f"{SVG}rect")).get("x"))

    assert left("branch_a") == left("branch_b") and top("branch_a") != top("branch_b")  # parallel branches
    assert left("joined") > left("branch_b")  # the merge after both


TWO_LANES = """
    name: two_lanes
    input: [3, 16, 16]
    layers:
      - {name: stem, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: b1_conv1, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: b1_bn1, type: batchnorm2d}
      - {name: b1_conv2, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
      - {name: b1_add, type: add, inputs: [b1_conv2, stem]}
      - {name: b2_conv1, type: conv2d, out_channels: 16, kernel_size: 3, stride: 2, padding: 1}
      - {name: b2_bn1, type: batchnorm2d}
      - {name: b2_conv2, type: conv2d, out_channels: 16, kernel_size: 3, padding: 1}
      - {name: b2_bn2, type: batchnorm2d}
      - {name: b2_proj, type: conv2d, out_channels: 16, kernel_size: 1, stride: 2, inputs: b1_add}
      - {name: b2_add, type: add, inputs: [b2_bn2, b2_proj]}
      - {name: pool, type: global_avgpool2d}
"""


def boxes_crossed(diagram, edge, points) -> list[str]:
    """The boxes other than its own two that a route along ``points`` passes through."""
    crossed = []
    for box in diagram.boxes:
        if box.name in (edge.source, edge.target):
            continue
        inside = (box.x + 1, box.y + 1, box.x + box.width - 1, box.y + box.height - 1)
        if any(segment_enters(start, end, inside) for start, end in itertools.pairwise(points)):
            crossed.append(box.name)
    return crossed


def segment_enters(start, end, rect) -> bool:
    """Whether the segment meets the rectangle (left, top, right, bottom): Liang-Barsky clipping."""
    (x1, y1), (x2, y2) = start, end
    low, high = 0.0, 1.0
    for delta, near, far in ((x2 - x1, rect[0] - x1, rect[2] - x1), (y2 - y1, rect[1] - y1, rect[3] - y1)):
        if delta == 0:
            if near > 0 or far < 0:
                return False
            continue
        t1, t2 = sorted((near / delta, far / delta))
        low, high = max(low, t1), min(high, t2)
    return low <= high


@pytest.mark.parametrize("spec", [GRAPH, "two_lanes", *ZOO_SPECS], ids=lambda p: getattr(p, "name", p))
def test_no_edge_passes_behind_a_box_and_each_ends_in_an_arrowhead(spec, write_spec, tmp_path):
    """A projection shortcut from a second lane ran straight through b2_bn2, and residual arches
    started and ended behind the boxes next to them (issue #22, item 5)."""
    from netspec.views.diagram import layout, render_svg

    net = check_file(write_spec(TWO_LANES) if spec == "two_lanes" else spec)
    diagram = layout(net)
    for edge in diagram.edges:
        assert boxes_crossed(diagram, edge, edge.points) == [], (edge.source, edge.target)
        assert edge.points[0][0] == next(b for b in diagram.boxes if b.name == edge.source).x + \
            next(b for b in diagram.boxes if b.name == edge.source).width
    if spec == "two_lanes":  # the check sees the straight line that crossed a box
        [shortcut] = [e for e in diagram.edges if e.source == "b2_proj"]
        assert boxes_crossed(diagram, shortcut, [shortcut.points[0], shortcut.points[-1]]) == ["b2_bn2"]
        arch = next(e for e in diagram.edges if e.source == "stem" and e.target == "b1_add")
        assert len(arch.points) == 6 and arch.points[2][1] < min(b.y for b in diagram.boxes)  # over the boxes
    root = ET.fromstring(render_svg(net))
    arrow = next(m for m in root.iter(f"{SVG}marker"))
    drawn = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    assert len(drawn) == len(diagram.edges)
    assert all(p.get("marker-end") == f"url(#{arrow.get('id')})" for p in drawn)


def test_by_block_collapses_each_module_use_into_a_box(tmp_path):
    out = tmp_path / "resnet.svg"
    spec = SPECS_DIR / "zoo" / "resnet18.yaml"
    assert CliRunner().invoke(app, ["draw", str(spec), "-o", str(out), "--by-block"]).exit_code == 0
    boxes = groups_of(ET.fromstring(out.read_text()), "block")
    assert [g.get("data-name") for g in boxes] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                                  "layer4", "avgpool", "fc"]
    assert boxes[5].get("data-type") == "basic_block ×2"
    net = check_file(spec)
    assert int(boxes[5].get("data-params")) == sum(cl.params for cl in net.layers
                                                   if cl.name.startswith("layer2."))


def test_the_papers_grouped_layers_are_drawn_as_two_towers(tmp_path):
    out = tmp_path / "alexnet.svg"
    CliRunner().invoke(app, ["draw", str(SPECS_DIR / "alexnet.yaml"), "-o", str(out)])
    root = ET.fromstring(out.read_text())
    towers = {g.get("data-name"): sum(r.get("class") == "tower" for r in g.iter(f"{SVG}rect"))
              for g in groups_of(root, "layer")}
    assert {name for name, count in towers.items() if count} == {"conv2", "conv4", "conv5"}
    assert towers["conv2"] == 2


def test_by_block_draws_one_box_per_block_and_png_output(tmp_path):
    pytest.importorskip("cairosvg")
    spec = SPECS_DIR / "alexnet-torchvision.yaml"
    svg, png = tmp_path / "blocks.svg", tmp_path / "blocks.png"
    assert CliRunner().invoke(app, ["draw", str(spec), "-o", str(svg), "--by-block"]).exit_code == 0
    blocks = groups_of(ET.fromstring(svg.read_text()), "block")
    assert [g.get("data-name") for g in blocks] == ["features", "avgpool", "flatten", "classifier"]
    assert int(blocks[-1].get("data-params")) == 37_752_832 + 16_781_312 + 4_097_000
    assert CliRunner().invoke(app, ["draw", str(spec), "-o", str(png)]).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_refuses_other_formats_and_overwriting(tmp_path):
    spec = str(SPECS_DIR / "alexnet.yaml")
    result = CliRunner().invoke(app, ["draw", spec, "-o", str(tmp_path / "net.pdf")])
    assert result.exit_code == 2 and "the diagram is an .svg or a .png" in result.output
    (tmp_path / "net.svg").write_text("mine")
    result = CliRunner().invoke(app, ["draw", spec, "-o", str(tmp_path / "net.svg")])
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "net.svg").read_text() == "mine"


def test_draw_creates_a_missing_output_folder_as_export_does(tmp_path):
    target = tmp_path / "new" / "folder" / "net.svg"
    result = CliRunner().invoke(app, ["draw", str(SPECS_DIR / "alexnet.yaml"), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "<svg" in target.read_text()
    failed = CliRunner().invoke(app, ["draw", str(SPECS_DIR / "alexnet.yaml"), "-o", str(tmp_path / "x" / "n.pdf")])
    assert failed.exit_code == 2 and not (tmp_path / "x").exists()


SEED_VARIANTS = ["alexnet.yaml", "alexnet-torchvision.yaml", "alexnet-keras.yaml", "alexnet-onetower.yaml",
                 "alexnet-cifar10.yaml"]


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(SEED_VARIANTS, 2)))
def test_the_diff_of_each_pair_of_variants_adds_up_to_the_checkers_numbers(a, b):
    result = CliRunner().invoke(app, ["diff", str(SPECS_DIR / a), str(SPECS_DIR / b), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    net_a, net_b = check_file(SPECS_DIR / a), check_file(SPECS_DIR / b)
    assert doc["totals"]["params"] == [net_a.totals.params, net_b.totals.params]
    assert doc["totals"]["macs"] == [net_a.totals.macs, net_b.totals.macs]
    assert sum(layer["params_delta"] for layer in doc["layers"]) == net_b.totals.params - net_a.totals.params
    by_name_a = {cl.name: cl for cl in net_a.layers}
    by_name_b = {cl.name: cl for cl in net_b.layers}
    for layer in doc["layers"]:
        if layer["name_a"]:
            cl = by_name_a[layer["name_a"]]
            assert (layer["params_a"], layer["shape_a"]) == (cl.params, fmt_shape(cl.output_shape))
        if layer["name_b"]:
            cl = by_name_b[layer["name_b"]]
            assert (layer["params_b"], layer["shape_b"]) == (cl.params, fmt_shape(cl.output_shape))
    assert {layer["name_a"] for layer in doc["layers"]} - {None} == set(by_name_a)
    assert {layer["name_b"] for layer in doc["layers"]} - {None} == set(by_name_b)


def test_the_diff_explains_torchvisions_extra_parameters():
    result = CliRunner().invoke(app, ["diff", str(SPECS_DIR / "alexnet.yaml"),
                                      str(SPECS_DIR / "alexnet-torchvision.yaml"), "--json"])
    doc = json.loads(result.output)
    assert doc["explanation"] == ("alexnet-torchvision has 135,616 more trainable parameters than alexnet: "
                                  "conv3 -221,184, conv4 +221,056, conv5 +147,456, conv1 -11,648, conv2 -64.")
    conv2 = next(layer for layer in doc["layers"] if layer["name_a"] == "conv2")
    assert conv2["settings"]["groups"] == [2, 1] and conv2["settings"]["out_channels"] == [256, 192]
    statuses = {layer["name_a"] or layer["name_b"]: layer["status"] for layer in doc["layers"]}
    assert statuses["lrn1"] == "removed" and statuses["avgpool6"] == "added" and statuses["flatten"] == "renamed"
    table = CliRunner().invoke(app, ["diff", str(SPECS_DIR / "alexnet.yaml"),
                                     str(SPECS_DIR / "alexnet-torchvision.yaml")])
    assert table.exit_code == 0 and "135,616 more trainable parameters" in " ".join(table.output.split())


def test_the_diff_of_a_spec_with_itself_is_empty():
    spec = str(SPECS_DIR / "alexnet.yaml")
    doc = json.loads(CliRunner().invoke(app, ["diff", spec, spec, "--json"]).output)
    assert {layer["status"] for layer in doc["layers"]} == {"same"}
    assert doc["explanation"] == "alexnet and alexnet have the same number of trainable parameters."


TINY = """
    name: tiny
    description: A <b>tiny</b> net & friends
    input: [3, 16, 16]
    layers:
      - {name: conv1, type: conv2d, out_channels: 8, kernel_size: 3, padding: 1, activation: relu}
      - {name: pool1, type: maxpool2d, kernel_size: 2}
      - {type: flatten}
      - {name: fc, type: linear, out_features: 10}
    data: {dataset: digits}
    training: {epochs: 2, batch_size: 64, optimizer: {name: adam, lr: 0.003}}
"""


@pytest.fixture
def trained_run(write_spec, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    run = tmp_path / "run"
    args = ["train", str(write_spec(TINY)), "--max-steps", "4", "--run-dir", str(run)]
    monkeypatch.setattr("sys.argv", ["/usr/bin/netspec", *args])  # what run.json records, as from a shell
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.torch
def test_the_report_of_a_real_run_holds_everything_and_renders_in_chromium(trained_run, tmp_path):
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(trained_run), "-o", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert html.count('<tr class="layer">') == 4 and "<svg" in html and "data:image/png;base64," in html
    assert "A &lt;b&gt;tiny&lt;/b&gt; net &amp; friends" in html  # free text is escaped
    assert "netspec train" in html and "--max-steps 4" in html and "torch 2." in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch: opens offline
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert f"{records[-1]['val_top1'] * 100:.1f}%" in html

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", f"--screenshot={shot}",
                    "--window-size=1280,1600", page.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20)
        assert len(colours) > 200  # text, the diagram and the curves, not a blank or error page
        # the diagram's conv box (its fill colour) made it onto the page
        assert any(abs(r - 0xDB) < 4 and abs(g - 0xE9) < 4 and abs(b - 0xF6) < 4 for _, (r, g, b) in colours)
    assert smallest_diagram_label(chromium, html, tmp_path) >= 10  # a thin box's 9-px label, at its own size


def smallest_diagram_label(chromium, html: str, tmp_path) -> float:
    """The height in pixels of the report diagram's smallest label, as Chromium lays the page out."""
    measure = ("<script>const texts = [...document.querySelectorAll('.diagram svg text')].filter(t => t.textContent)"
               ".map(t => t.getBoundingClientRect().height); document.body.dataset.smallest = Math.min(...texts);"
               "</script>")
    measured = tmp_path / "measured.html"
    measured.write_text(html.replace("</body>", measure + "</body>"))
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600", "--dump-dom",
                          measured.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    return float(re.search(r'data-smallest="([0-9.]+)"', dom).group(1))


def test_a_reports_diagram_of_a_graph_keeps_legible_labels(trained_run, tmp_path):
    """A graph's diagram has lanes; fitted to a fixed height its labels were about 5 px tall."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    import yaml

    run = tmp_path / "graph-run"
    shutil.copytree(trained_run, run)
    info = json.loads((run / "run.json").read_text())
    info["spec"] = {**yaml.safe_load(TWO_LANES), "input": [3, 16, 16]}  # as if this net had been trained
    info["input_shape"] = None
    (run / "run.json").write_text(json.dumps(info))
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "graph-report.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "graph-report.html").read_text()
    assert 'data-name="b2_proj"' in html
    assert smallest_diagram_label(chromium, html, tmp_path) >= 10


def test_report_creates_a_missing_output_folder_as_draw_does(trained_run, tmp_path):
    """It answered "the folder ... does not exist", unlike export and draw."""
    target = tmp_path / "new" / "folder" / "report.html"
    result = CliRunner().invoke(app, ["report", str(trained_run), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "<svg" in target.read_text()


def test_report_of_a_folder_that_holds_no_run(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "it has no run.json" in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_batch_norms_parameters_are_counted_alike_in_check_diff_draw_and_report(tmp_path):
    """A batch norm over 64 channels: check said 128 (trainable), diff, draw and report said 256
    (running statistics included). One definition everywhere: trainable, as check's Params."""
    from netspec.analysis.report import summary_json
    from netspec.views.diagram import write_diagram

    net = check_file(SPECS_DIR / "zoo" / "resnet18.yaml")
    assert net.layer("bn1").params == 128 and net.layer("bn1").non_trainable == 128
    assert next(layer for layer in summary_json(net)["layers"] if layer["name"] == "bn1")["params"] == 128
    result = CliRunner().invoke(app, ["diff", str(SPECS_DIR / "zoo" / "resnet18.yaml"),
                                      str(SPECS_DIR / "zoo" / "resnet34.yaml"), "--json"])
    bn1 = next(layer for layer in json.loads(result.output)["layers"] if layer["name_a"] == "bn1")
    assert (bn1["params_a"], bn1["params_b"]) == (128, 128)
    svg = write_diagram(net, tmp_path / "net.svg")
    boxes = {g.get("data-name"): g for g in ET.parse(svg).getroot().iter(f"{SVG}g") if g.get("data-name")}
    assert int(boxes["bn1"].get("data-params")) == 128
    assert f"{net.totals.trainable_params:,} trainable parameters" in svg.read_text()


@pytest.mark.torch
@pytest.mark.parametrize("accuracy", [0.2, 0.99])
def test_the_curves_legends_cover_no_line(accuracy):
    """Inside the panel the legend covered the top-5 line once a run learned (issue #22, item 10)."""
    import matplotlib.pyplot as plt

    from netspec.train.plot import curves_figure

    records = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "train_top1": accuracy * e / 4,
                "val_top1": accuracy * e / 4, "val_top5": min(1.0, 1.2 * accuracy * e / 4)} for e in range(1, 5)]
    figure = curves_figure(records, "tiny (torch)")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    try:
        for ax in figure.axes:
            legend = ax.get_legend().get_window_extent(renderer)
            for line in ax.get_lines():
                points = ax.transData.transform(line.get_xydata())
                assert not any(legend.contains(x, y) for x, y in points), line.get_label()
            assert not legend.overlaps(ax.get_window_extent(renderer))  # below the panel, not over it
            assert legend.y1 > 0  # and still inside the picture
    finally:
        plt.close(figure)

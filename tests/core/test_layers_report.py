"""The per-layer comparison as people and Model Explorer get it: report.html's per-layer section in real
headless Chromium, and `<slug>.model-explorer.json` against Model Explorer's own node data format.

One real run, module-wide: the planted model (edgeport_testing.save_planted: a 1x1 conv scaling 2 of 8
channels by 1000, the next scaling them back) with --layers on tflite:int8 and onnx:int8, where both name
`planted_down` the first divergent layer.

Model Explorer's format, from ai-edge-model-explorer 0.1.34 (read, not a dependency: it pulls a 481 MB native
adapter, Flask and IPython, and has no Python reader of node data; the web app's JavaScript parses it):
`model_explorer/node_data_builder.py` defines ModelNodeData {graph id: GraphNodeData} (what `to_json_string`
writes), GraphNodeData, NodeDataResult, ThresholdItem, GradientItem (None fields dropped by `remove_none`).
The web app (`processNodeDataProviderDataForGraph` in its main-*.js) colours the graph whose id is the key and
resolves each result key through the nodes' output `tensor_name` first, else as a node id: the TFLite adapter
names outputs by their flatbuffer tensor names, subgraph 0 is the graph id (`main`); model-explorer-onnx ids
a node by its name (`<node_i>` when it has none), the graph by the ONNX graph's name, and gives outputs no
`tensor_name`.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeport.checks.layers import model_explorer_data
from edgeport_testing import ORT_FUSED_FOR_LAYERS, run_cli, save_planted

TARGETS = ("tflite:int8", "onnx:int8")
VIEWPORT = {"width": 1200, "height": 900}

# ---- Model Explorer's node data format (model_explorer/node_data_builder.py, ai-edge-model-explorer 0.1.34) ----

GRAPH_FIELDS = {  # GraphNodeData: field -> JSON type; only `results` is required
    "results": dict,
    "name": str,
    "thresholds": list,
    "gradient": list,
    "hideInAggregatedStatsTable": bool,
    "hideInChildrenStatsTable": bool,
    "hideAggregatedStats": list,
    "showExpandedSummaryOnGroupNode": bool,
    "showLabelCountColumnsInChildrenStatsTable": bool,
}
RESULT_FIELDS = {"value", "bgColor", "textColor"}  # NodeDataResult: value (Num) required
THRESHOLD_FIELDS = {"value", "bgColor", "textColor"}  # ThresholdItem: value (Num) and bgColor required
GRADIENT_FIELDS = {"stop", "bgColor", "textColor"}  # GradientItem: stop (Num, 0..1) required
AGGREGATED_STATS = {"min", "max", "sum", "avg"}
COLOR = re.compile(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]+")  # GradientItem: "hex color or color names"


def _number(value: Any) -> bool:
    """`Num = Union[float, int]`, and finite: the web app's JSON.parse has no NaN or Infinity."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fields(where: str, item: Any, allowed: set[str], required: set[str]) -> list[str]:
    if not isinstance(item, dict):
        return [f"{where}: not an object"]
    problems = [f"{where}: unknown field {key!r}" for key in sorted(set(item) - allowed)]
    problems += [f"{where}: missing {key!r}" for key in sorted(required - set(item))]
    for key in ("bgColor", "textColor"):
        if key in item and not (isinstance(item[key], str) and COLOR.fullmatch(item[key])):
            problems.append(f"{where}: {key} {item[key]!r} is not a hex colour or a colour name")
    return problems


def _result_problems(where: str, result: Any) -> list[str]:
    problems = _fields(where, result, RESULT_FIELDS, {"value"})
    if not problems and not _number(result["value"]):
        problems.append(f"{where}: value {result['value']!r} is not a finite number")
    return problems


def _gradient_problems(where: str, gradient: list[Any]) -> list[str]:
    problems, stops = [], []
    for index, item in enumerate(gradient):
        found = _fields(f"{where}[{index}]", item, GRADIENT_FIELDS, {"stop"})
        if not found and not (_number(item["stop"]) and 0 <= item["stop"] <= 1):
            found.append(f"{where}[{index}]: stop {item['stop']!r} is not a number from 0 to 1")
        problems += found
        stops += [item["stop"]] if not found else []
    if gradient and not {0, 1} <= set(stops):
        problems.append(f"{where}: stops 0 and 1 must both be given")
    return problems


def _threshold_problems(where: str, thresholds: list[Any]) -> list[str]:
    problems = []
    for index, item in enumerate(thresholds):
        found = _fields(f"{where}[{index}]", item, THRESHOLD_FIELDS, {"value", "bgColor"})
        if not found and not _number(item["value"]):
            found.append(f"{where}[{index}]: value {item['value']!r} is not a finite number")
        problems += found
    return problems


def _graph_problems(graph_id: str, graph: Any) -> list[str]:
    problems = _fields(graph_id, graph, set(GRAPH_FIELDS), {"results"})
    if problems:
        return problems
    for key, kind in GRAPH_FIELDS.items():
        if key in graph and not isinstance(graph[key], kind):
            problems.append(f"{graph_id}: {key} is not a {kind.__name__}")
    if problems:
        return problems
    for key, result in graph["results"].items():
        problems += _result_problems(f"{graph_id}: results[{key!r}]", result)
    problems += _gradient_problems(f"{graph_id}: gradient", graph.get("gradient", []))
    problems += _threshold_problems(f"{graph_id}: thresholds", graph.get("thresholds", []))
    if not set(graph.get("hideAggregatedStats", [])) <= AGGREGATED_STATS:
        problems.append(f"{graph_id}: hideAggregatedStats holds other than {sorted(AGGREGATED_STATS)}")
    return problems


def node_data_problems(data: Any) -> list[str]:
    """What keeps `data` from being a ModelNodeData as Model Explorer writes and reads it ([] if nothing).

    A bare GraphNodeData is refused too: the web app would take it for the graph on screen (it tells them
    apart by a top-level `results`), whatever graph it was meant for."""
    if not isinstance(data, dict) or not data:
        return ["not an object of graph id -> GraphNodeData"]
    if isinstance(data.get("results"), dict) and "results" not in data["results"]:
        return ["a bare GraphNodeData, not keyed by graph id"]
    return [problem for graph_id, graph in data.items() for problem in _graph_problems(graph_id, graph)]


def strict_json(text: str) -> Any:
    """json.loads refusing NaN and Infinity, as the web app's JSON.parse does."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ---- the keys Model Explorer's adapters give an artifact's graph -----------------------------------------------


@dataclass(frozen=True)
class ExplorerGraph:
    graph_id: str
    keys: set[str]  # what a node data result key can resolve to: output tensor names or node ids
    key_of_tensor: dict[str, str]  # artifact tensor -> the key Model Explorer shows its producing node by


def tflite_graph(model: Path) -> ExplorerGraph:
    """The TFLite adapter: graph id = subgraph 0's name, each operator output tagged with its tensor name."""
    from edgeport.formats.tflite.flatbuffer import operator_output_names, read_model

    names = operator_output_names(model)
    graph_id = read_model(model).subgraphs[0].name.decode()
    return ExplorerGraph(graph_id, set(names), {name: name for name in names})


def onnx_graph(model: Path) -> ExplorerGraph:
    """model-explorer-onnx: graph id = the graph's name, node id = the node's name (`<node_i>` without one)."""
    import onnx

    graph = onnx.load(str(model)).graph
    ids = {output: node.name or f"<node_{i}>" for i, node in enumerate(graph.node) for output in node.output}
    return ExplorerGraph(graph.name, set(ids.values()), ids)


# ---- the run and the browser -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlantedRun:
    out: Path
    targets: dict[str, dict[str, Any]]  # report.json's targets by name


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> PlantedRun:
    base = tmp_path_factory.mktemp("layers-report")
    model, images, _ = save_planted(base / "planted", 1000.0)
    np.savez(base / "planted.npz", image=images)
    out = base / "out"
    targets = [arg for target in TARGETS for arg in ("-t", target)]
    result = run_cli(
        "convert", model, *targets, "--data", base / "planted.npz", "--layers", "-o", out, "--no-bench",
        "--no-baseline", *ORT_FUSED_FOR_LAYERS,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # int8 loses the planted channels: both checks fail
    report = json.loads((out / "report.json").read_text())
    return PlantedRun(out=out, targets={t["name"]: t for t in report["targets"]})


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, found as the tfjs-browser runtime finds it (EDGEPORT_CHROMIUM, else on PATH)."""
    from playwright.sync_api import sync_playwright

    from edgeport.targets.tfjs.browser import CHROMIUM_ARGS, chromium_executable

    executable = chromium_executable()
    assert executable, "Chromium not found (EDGEPORT_CHROMIUM or chromium on PATH): `make test` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        yield browser
        browser.close()


def open_report(chromium, html_file: Path):
    """The page loaded from disk, and every console error or warning and page error it raised."""
    page = chromium.new_page(viewport=VIEWPORT)
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: messages.append(f"page error: {error}"))
    page.goto(html_file.resolve().as_uri(), wait_until="load")
    return page, messages


# ---- PNG checks --------------------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's signature and IHDR chunk; AssertionError if it is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR", "a PNG starts with its IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_pixels(path: Path) -> np.ndarray:
    """Height x width x RGB uint8, decoded by matplotlib (the report extra edgeport's plots need)."""
    from matplotlib import image

    pixels = image.imread(str(path))
    return np.round(pixels[..., :3] * 255).astype(np.uint8)


def near(pixels: np.ndarray, color: Any, tolerance: int = 40) -> int:
    """How many pixels are within `tolerance` (per channel, 0-255) of a matplotlib colour."""
    from matplotlib.colors import to_rgb

    rgb = np.round(np.array(to_rgb(color)) * 255).astype(np.int16)
    return int((np.abs(pixels.astype(np.int16) - rgb).max(axis=-1) <= tolerance).sum())


def line_colors(count: int) -> list[Any]:
    """The colours matplotlib draws the first `count` lines in (report/html._layers_figure uses the cycle)."""
    from matplotlib import rcParams

    return [item["color"] for item in rcParams["axes.prop_cycle"]][:count]


# ---- the tests ---------------------------------------------------------------------------------------------------


def test_layers_section_renders_in_chromium_with_its_chart_and_each_first_divergent_layer(
    planted_run, chromium, tmp_path
):
    page, messages = open_report(chromium, planted_run.out / "report.html")
    assert page.locator("#layers").is_visible() and page.locator("#layers-table").is_visible()

    chart = page.locator("h2#layers + p + div.plot > svg")  # inline SVG (the page loads nothing, no <img>)
    assert chart.count() == 1 and chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 120, box
    legend = chart.text_content() or ""
    assert all(target in legend for target in TARGETS), legend
    chart_png = tmp_path / "layers-chart.png"
    chart.screenshot(path=str(chart_png))
    drawn = png_pixels(chart_png)
    for target, color in zip(TARGETS, line_colors(len(TARGETS)), strict=True):  # where both targets agree
        assert near(drawn, color) > 15, f"{target}'s line ({color}) is not painted"  # one line hides the
        # other: the legend swatch alone paints some 30 pixels of its colour, a chart without it none

    rows = page.eval_on_selector_all(
        "#layers-table tr:has(td)", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    )
    by_target = {cells[0]: cells for cells in rows}
    assert set(by_target) == set(TARGETS)
    for target in TARGETS:
        layers = planted_run.targets[target]["layers"]
        first = layers["first_divergent"]
        assert first.endswith("planted_down"), layers
        assert by_target[target][1] == f"{first} ({layers['first_divergent_op']})"

    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    width, height = png_size(screenshot.read_bytes())
    assert width == VIEWPORT["width"] and height >= VIEWPORT["height"]
    pixels = png_pixels(screenshot)
    assert pixels.shape[:2] == (height, width)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100, "a blank or flat screenshot"
    assert (pixels.min(axis=-1) < 200).mean() > 0.01, "next to nothing is drawn on the page"
    assert messages == []


def test_model_explorer_files_are_model_explorer_node_data_keyed_as_its_adapters_name_the_artifact(planted_run):
    explorers = {"tflite:int8": tflite_graph, "onnx:int8": onnx_graph}
    for target in TARGETS:
        entry = planted_run.targets[target]
        layers = entry["layers"]
        data = strict_json((planted_run.out / layers["model_explorer_file"]).read_text())
        assert node_data_problems(data) == [], target
        explorer = explorers[target](planted_run.out / entry["artifact"])
        assert list(data) == [explorer.graph_id], target
        results = data[explorer.graph_id]["results"]
        assert len(results) == len(layers["tensors"]) and set(results) <= explorer.keys, (target, set(results))
        first = next(t for t in layers["tensors"] if t["name"] == layers["first_divergent"])
        reddest = max(results, key=lambda key: results[key]["value"])
        assert reddest == explorer.key_of_tensor[first["artifact_tensor"]], target  # red: planted_down


def test_model_explorer_data_keys_by_node_id_when_given_and_never_writes_a_non_number():
    tensors = [
        {"name": "conv", "artifact_tensor": "conv:0_QuantizeLinear_Output", "added_error": 0.25},
        {"name": "relu", "artifact_tensor": "relu;conv", "added_error": float("inf")},
    ]
    data = model_explorer_data(tensors, "tf2onnx", {"conv": "conv_node"})
    assert node_data_problems(strict_json(json.dumps(data))) == []
    assert data["tf2onnx"]["results"] == {"conv_node": {"value": 0.25}, "relu;conv": {"value": 1e9}}


def test_the_format_check_refuses_what_model_explorer_would_not_read():
    good = {"results": {"a": {"value": 1}}, "gradient": [{"stop": 0, "bgColor": "#fff"}, {"stop": 1}]}
    assert node_data_problems({"main": good}) == []
    assert node_data_problems(good) == ["a bare GraphNodeData, not keyed by graph id"]
    bad = {
        "main": {
            "results": {"a": {"value": "1"}, "b": {"score": 1}},
            "gradient": [{"stop": 0, "bgColor": "rgb(1, 2, 3)"}, {"stop": 2}],
            "thresholds": [{"value": 1}],
            "colour": "red",
        }
    }
    assert node_data_problems(bad) == ["main: unknown field 'colour'"]
    del bad["main"]["colour"]
    assert node_data_problems(bad) == [
        "main: results['a']: value '1' is not a finite number",
        "main: results['b']: unknown field 'score'",
        "main: results['b']: missing 'value'",
        "main: gradient[0]: bgColor 'rgb(1, 2, 3)' is not a hex colour or a colour name",
        "main: gradient[1]: stop 2 is not a number from 0 to 1",
        "main: gradient: stops 0 and 1 must both be given",
        "main: thresholds[0]: missing 'bgColor'",
    ]
    with pytest.raises(ValueError, match="NaN is not JSON"):
        strict_json('{"main": {"results": {"a": {"value": NaN}}}}')

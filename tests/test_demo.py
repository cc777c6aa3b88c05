"""`tfcompress demo --quick`: the table, report.md and tradeoff.png, and the issue's must-show
numbers (int8 agreement with Keras >= 99 %, int8 file <= 30 % of float32)."""

import re

import numpy as np

from tfcompress.cli import main
from tfcompress.demo import build_digits_cnn, markdown_table


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 10 and cells[0] in ("float32", "float16", "dynamic", "int8"):
            rows[cells[0]] = cells
    assert set(rows) == {"float32", "float16", "dynamic", "int8"}
    pct = lambda text: float(text.rstrip("%")) / 100  # noqa: E731
    size = {k: float(v[2]) for k, v in rows.items()}
    assert size["int8"] <= 0.30 * size["float32"]
    assert size["float16"] < 0.55 * size["float32"]
    assert pct(rows["int8"][6]) >= 0.99  # agreement with Keras
    assert pct(rows["float32"][6]) == 1.0
    # float32 TFLite accuracy equals the Keras accuracy it was exported from.
    assert rows["float32"][4] == rows["float32"][5]
    for name in rows:
        assert (out / f"{name}.tflite").exists()
        assert float(rows[name][8]) > 0  # median latency
    assert "PASS: int8 agreement with Keras >= 99%" in report
    assert "PASS: int8 size <= 30% of float32" in report
    assert "| int8 | int8 |" in printed and re.search(r"\[tfcompress\] wrote .*report.md", printed)


def test_markdown_table_ratios_are_computed_from_sizes():
    rows = [{"label": "float32", "quantize": "float32", "size_bytes": 4096, "top1": 0.9,
             "keras_top1": 0.9, "agreement": 1.0, "max_abs_error": 0.0, "median_ms": 0.5,
             "p90_ms": 0.6},
            {"label": "int8", "quantize": "int8", "size_bytes": 1024, "top1": 0.88,
             "keras_top1": 0.9, "agreement": 0.975, "max_abs_error": 0.01, "median_ms": 0.25,
             "p90_ms": 0.3}]
    table = markdown_table(rows)
    assert "| int8 | int8 | 1.0 | 25.0% | 88.00% | 90.00% | 97.50% |" in table
    assert "| float32 | float32 | 4.0 | 100.0% |" in table


def test_demo_cnn_is_big_enough_for_the_size_target():
    model = build_digits_cnn()
    weights = sum(int(np.prod(w.shape)) for w in model.weights)
    assert weights == model.count_params() > 50_000

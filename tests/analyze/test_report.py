"""Plots, tables and the self-contained report; the browser test opens it in real headless Chromium.

Covers: hpc_instruct.analyze.report, hpc_instruct.analyze.report_content, hpc_instruct.analyze.plots. Covers also hpc_instruct.analyze.answer_plots (the answers' figures)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from headless_chromium import Chromium, find_chromium

from hpc_instruct.analyze.report import write_report

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(main_study, main_analysis) -> Path:
    return write_report(main_study.directory, analysis=main_analysis)


def test_plots_are_written_as_png_and_svg(report):
    plots = report.parent / "plots"
    for name in ("growth", "sensitivity"):
        png, svg = plots / f"{name}.png", plots / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()[:2000]
    assert not (plots / "transfer.png").exists()  # the main study has no single-ability trials


def test_transfer_heatmap(transfer_study):
    html = write_report(transfer_study.directory, budget=1000).read_text()
    transfer = html.split("<h2>Transfer</h2>")[1].split("<h2>")[0]
    assert "Single-ability trials (mini, 256 samples)" in transfer
    answer = html.split("<h3>(iii) Transfer between abilities</h3>")[1].split("<h3>")[0]
    assert "data:image/png;base64," in answer and "Shown: instruction data transfers" in answer
    assert (transfer_study.directory / "results" / "plots" / "transfer.png").stat().st_size > 5_000


def test_html_is_self_contained(report):
    html = report.read_text()
    images = re.findall(r"<img [^>]*src='([^']+)'", html)
    # growth and, in the answers, sensitivity, curated-vs-synthetic ratios and the planner check
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)  # nothing fetched from a network
    assert "<script" not in html and "<style>" in html
    answers = html.split("<h2>Answers</h2>")[1].split("<h2>Details</h2>")[0]
    titles = re.findall(r"<h3>(.*?)</h3>", answers)
    assert [t[:4] for t in titles] == ["(i) ", "(ii)", "(iii", "(iv)"]  # one short section per question
    assert answers.count("<p class=") == 4 and answers.count("data:image/png;base64,") == 3  # (iii): no arm
    assert html.index("<h2>Answers</h2>") < html.index("<h2>Growth curves</h2>")  # answers before tables
    for heading in (
        "Planner predictions vs measurements",
        "Growth curves",
        "Sensitivity to data and model size",
        "Curated vs synthetic",
        "Data allocation plan",
        "Checkpoint selection",
        "Provenance",
    ):
        assert f"<h2>{heading}</h2>" in html
    for fact in (
        "sim-template-0001",
        "sim-tokenizer-0001",
        "doit-scoring-1",
        "+simulated",
        "sha256:",
        "name: main",
    ):
        assert fact in html, fact


def test_markdown_and_table_exports(report):
    md = (report.parent / "report.md").read_text()
    assert "![" in md and "(plots/growth.png)" in md and "## Provenance" in md
    tables = report.parent / "tables"
    for name in ("scores", "growth_points", "curves", "sensitivity", "efficiency", "allocation", "selection"):
        assert (tables / f"{name}.csv").is_file() and (tables / f"{name}.parquet").is_file()
    assert len(pd.read_parquet(tables / "scores.parquet")) == len(
        pd.read_parquet(report.parent / "scores.parquet")
    )
    assert pl.read_csv(tables / "sensitivity.csv").height == len(pd.read_csv(tables / "sensitivity.csv"))


def test_install_script_is_idempotent_shell():
    script = ROOT / "tools" / "install-chromium.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "apt-get install" in script.read_text() and "chromium-driver" in script.read_text()


@pytest.mark.browser
def test_report_renders_in_chromium_with_every_image_loaded(report):
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "chromium not installed: run `bash tools/install-chromium.sh` (Debian packages chromium, "
            "chromium-driver)"
        )
    with Chromium(binary) as browser:
        browser.open(report.as_uri())
        page = browser.evaluate("""({
            title: document.title,
            sections: document.querySelectorAll('h2').length,
            images: [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth})),
            tables: document.querySelectorAll('table').length,
            height: document.documentElement.scrollHeight
        })""")
        shot = browser.screenshot(report.parent / "report-screenshot.png")
    assert page["title"] == "main: study report"
    assert page["sections"] >= 7 and page["tables"] >= 6 and page["height"] > 2000
    assert len(page["images"]) == 4
    assert all(img["complete"] and img["width"] > 0 for img in page["images"]), page["images"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_sensitivity_figure_without_any_estimable_slope(tmp_path):
    """One volume and one size: no slope is estimable, so no figure (not a crash of the whole report)."""
    from hpc_instruct.analyze.plots import sensitivity_figure

    table = pd.DataFrame({"ability": ["math"], "data_slope": [float("nan")], "data_slope_lo": [float("nan")],
                          "data_slope_hi": [float("nan")], "size_slope": [float("nan")],
                          "size_slope_lo": [float("nan")], "size_slope_hi": [float("nan")]})
    assert sensitivity_figure(table, tmp_path) is None

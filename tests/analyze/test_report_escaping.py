"""Both reports show hostile recipe text and labels as written: a description that holds a code fence and HTML,
and a model name that is an HTML tag, never become markup in report.md (rendered with a CommonMark renderer that
passes raw HTML) or report.html.

Covers: hpc_instruct.analyze.markdown_text."""

from __future__ import annotations

import markdown_it
import pytest
from analyze_studies import make_study

from hpc_instruct.analyze.report import write_report

HOSTILE_MODEL = "m<img src=x onerror=alert(1)>`|*"
DESCRIPTION = "a study\n```\n<script>alert('fence')</script>\n# Heading\n"
RECIPE = """\
study:
  name: hostile
  output_root: OUT
  description: |
    a study
    ```
    <script>alert('fence')</script>
    # Heading
models:
  - {name: "M", size: tiny, device: cpu, micro_batch: 4, global_batch: 8}
data: {root: DATA, abilities: [biology, math]}
sweep:
  seeds: [0]
  curated: {samples_per_ability: [4, 64]}
training: {epochs: 1, precision: fp32, lr: 1.0e-3, max_length: 256}
evaluation: {splits: [test], checkpoints: last, test_on: all, include_base: true, items_per_shard: 100}
""".replace('"M"', '"' + HOSTILE_MODEL.replace("\\", "\\\\").replace('"', '\\"') + '"')


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    study = make_study(tmp_path_factory.mktemp("hostile"), RECIPE, items=100)
    html_path = write_report(study.directory)
    return html_path.read_text(), (html_path.parent / "report.md").read_text()


def test_markdown_report_shows_hostile_text_as_text(reports):
    _, md = reports
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    assert "<script" not in rendered and "<img src=x" not in rendered
    assert "<h1>Heading</h1>" not in rendered  # the description's heading stays inside the recipe block
    assert "&lt;script&gt;alert(" in rendered  # shown, not run
    assert "onerror=alert(1)" in rendered  # the model's name is still there, as text
    assert rendered.count("<table>") == md.count("\n|---")
    assert "onerror=alert(1)&gt;`|*</td>" in rendered  # a `|` in a label never splits a table cell


def test_html_report_shows_hostile_text_as_text(reports):
    html, _ = reports
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html
    assert "onerror=alert(1)" in html


def test_markdown_text_quotes_only_what_markdown_acts_on():
    from hpc_instruct.analyze import markdown_text as md

    assert md.text("predicted -> measured") == "predicted -> measured"  # reads as written in report.md
    assert md.text("> not a quote").startswith("\\>") and md.text("# no heading").startswith("\\#")
    assert "<" not in md.text("<img src=x onerror=alert(1)>")  # never raw HTML

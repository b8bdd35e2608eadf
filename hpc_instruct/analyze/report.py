"""`hpci report`: the study's answers as one self-contained HTML file, a Markdown twin, and table exports.

`results/report.html` needs nothing but a browser: figures are embedded as base64 PNG data URIs, the CSS is
inline, there are no scripts and no network requests, so it can be mailed, archived or opened on a cluster.
`results/report.md` shows the same tables and links the PNG/SVG figures in `results/plots/`. Every table is also
written to `results/tables/<name>.csv` and `.parquet` for pandas/polars users. What the report says lives in
report_content.py; this module only renders it.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hpc_instruct.analyze import markdown_text as md
from hpc_instruct.analyze.analysis import Analysis, analyze_study
from hpc_instruct.analyze.answer_plots import efficiency_figure, planner_figure
from hpc_instruct.analyze.answers import Answer, answers, efficiency_summary
from hpc_instruct.analyze.curves import overall_first
from hpc_instruct.analyze.plots import Figure, growth_figure, sensitivity_figure, transfer_figure
from hpc_instruct.analyze.report_content import Section, provenance, sections
from hpc_instruct.atomic import atomic_path, write_text
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger(__name__)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#1d1d1f;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:12.5px}th,td{border:1px solid #d8d8d8;padding:3px 7px;
text-align:right}th{background:#f3f4f6}td.t,th.t{text-align:left}img{max-width:100%;height:auto;display:block;
margin:.6em 0}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:12px;border-radius:4px}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5em .8em}.ok{background:#eef8ee;
border-left:4px solid #3a3;padding:.5em .8em}figure{margin:1em 0}figcaption{color:#555;font-size:12px}
.muted{color:#666;font-size:12px}
"""


def write_report(
    study_dir: str | os.PathLike,
    *,
    analysis: Analysis | None = None,
    smooth: bool = True,
    budget: int | None = None,
) -> Path:
    """Analyse `study_dir` (unless `analysis` is given) and write report.html, report.md, plots/ and tables/
    under `results/`; returns the HTML path. `smooth`: the paper's display smoothing of growth lines."""
    study_dir = Path(study_dir)
    a = analysis or analyze_study(study_dir, budget=budget)
    sdir = StudyDir(study_dir)
    results, plots = sdir.results, sdir.plots
    panels = overall_first(a.plan.abilities) + list(a.plan.out_of_domain)
    made = [
        growth_figure(a.means, a.points, panels, plots, smooth),
        sensitivity_figure(a.sensitivity.table, plots),
    ]
    if not a.transfer.empty:
        made.append(transfer_figure(a.transfer.matrix, plots, a.transfer.model, a.transfer.samples))
    made.append(efficiency_figure(efficiency_summary(a), plots))
    made.append(planner_figure(a.plan_check.arms, plots))
    figures = {f.name: f for f in made if f is not None}
    tables = export_tables(a, sdir.tables)
    content = sections(a)
    recipe, facts = provenance(a, study_dir)
    write_text(sdir.report_md, _markdown(a, content, figures, tables, results, recipe, facts))
    path = sdir.report_html
    write_text(path, _html(a, content, figures, tables, results, recipe, facts))
    log.info("wrote %s", path)
    return path


def export_tables(a: Analysis, out: Path) -> list[Path]:
    """Every table as CSV and Parquet (atomically); returns the CSV paths."""
    matrix = a.transfer.matrix.reset_index() if not a.transfer.matrix.empty else pd.DataFrame()
    frames = {
        "scores": a.aggregate.scores,
        "selection": a.aggregate.selection,
        "growth_points": a.points,
        "growth_means": a.means,
        "curves": a.curve_table,
        "sensitivity": a.sensitivity.table,
        "sensitivity_per_seed": a.sensitivity.per_seed,
        "sensitivity_stability": a.sensitivity.stability,
        "efficiency": a.efficiency,
        "transfer": a.transfer.cells,
        "transfer_matrix": matrix,
        "allocation": a.allocation.comparison if a.allocation else pd.DataFrame(),
        "plan_check_arms": a.plan_check.arms,
        "plan_check_abilities": a.plan_check.per_ability,
        "plan_check_held_out": a.plan_check.held_out,
        "plan_check_contrasts": a.plan_check.contrasts,
        "parse_failures": a.parse_failures,
    }
    written = []
    for name, frame in frames.items():
        with atomic_path(out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        with atomic_path(out / f"{name}.parquet") as tmp:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        written.append(out / f"{name}.csv")
    return written


def _html(
    a: Analysis,
    content: list[Section],
    figures: dict[str, Figure],
    tables: list[Path],
    results: Path,
    recipe: str,
    facts: list[tuple[str, str]],
) -> str:
    c = a.aggregate.completeness
    study = _e(a.plan.study)
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{study}: study report</title>"
        f"<meta name='viewport' content='width=device-width'><style>{CSS}</style></head><body>",
        f"<h1>Study <code>{study}</code></h1>",
        f"<p class='{'ok' if c.ok else 'warn'}'>{_e(c.summary(limit=0)).replace(chr(10), '<br>')}</p>",
    ]
    if not c.ok:
        problems = pd.DataFrame([vars(p) for p in c.problems[:200]])
        parts.append(
            "<details open><summary>Problems: rows they touch are left out of every table below</summary>"
            + _html_table(problems, ("kind", "path", "task_id", "detail"))
            + "</details>"
        )
    parts.append("<h2>Answers</h2>")
    told = answers(a)
    for ans in told:
        parts.append(_html_answer(ans, figures))
    shown = {ans.figure for ans in told}
    parts.append("<h2>Details</h2><p class='muted'>The tables behind the answers.</p>")
    for section in content:
        parts.append(f"<h2>{_e(section.title)}</h2><p>{_e(section.intro)}</p>")
        if section.figure in figures and section.figure not in shown:
            f = figures[section.figure]
            data = base64.b64encode(f.png.read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{_e(f.caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{_e(f.caption)} Also as plots/{f.svg.name}.</figcaption></figure>"
            )
        parts += [_html_table(frame, columns) for frame, columns in section.tables]
        if section.title == "Data allocation plan" and a.allocation is not None:
            parts.append(
                "<p>Recipe snippet for the next study:</p><pre>" + _e(a.allocation.recipe_snippet) + "</pre>"
            )
    rows = "".join(f"<tr><th class='t'>{_e(k)}</th><td class='t'>{_e(v)}</td></tr>" for k, v in facts)
    parts.append(f"<h2>Provenance</h2><table>{rows}</table>")
    names = ", ".join(f"<code>{_e(str(p.relative_to(results)))}</code>" for p in tables)
    parts.append(f"<p>Tables for pandas/polars, as CSV and Parquet: {names}</p>")
    parts.append(f"<details><summary>Resolved recipe (study.yaml)</summary><pre>{_e(recipe)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(
    a: Analysis,
    content: list[Section],
    figures: dict[str, Figure],
    tables: list[Path],
    results: Path,
    recipe: str,
    facts: list[tuple[str, str]],
) -> str:
    told = answers(a)
    lines = (
        [f"# Study {md.code(a.plan.study)}", "", *md.fence(a.aggregate.completeness.summary(limit=50)), "",
         "## Answers", ""]
        + [line for ans in told for line in _md_answer(ans, figures)]
    )
    shown = {ans.figure for ans in told}
    for section in content:
        lines += [f"## {md.text(section.title)}", "", md.text(section.intro), ""]
        if section.figure in figures and section.figure not in shown:
            f = figures[section.figure]
            lines += [f"![{md.text(f.caption)}](plots/{f.png.name}) ([SVG](plots/{f.svg.name}))", ""]
        for frame, columns in section.tables:
            lines += [_md_table(frame, columns), ""]
        if section.title == "Data allocation plan" and a.allocation is not None:
            lines += ["Recipe snippet for the next study:", "", *md.fence(a.allocation.recipe_snippet, "yaml"), ""]
    lines += ["## Provenance", ""] + [f"- **{md.text(k)}**: {md.code(v)}" for k, v in facts] + [""]
    lines += ["Tables (CSV and Parquet): " + ", ".join(md.code(p.relative_to(results)) for p in tables), ""]
    lines += [
        "<details><summary>Resolved recipe (study.yaml)</summary>",
        "",
        *md.fence(recipe, "yaml"),
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def _html_answer(ans: Answer, figures: dict[str, Figure]) -> str:
    """One question: its verdict, the numbers with intervals, and its figure (embedded)."""
    verdict = "ok" if ans.verdict.startswith("Shown") else "warn"
    out = [f"<h3>{_e(ans.title)}</h3>", f"<p class='{verdict}'><b>{_e(ans.verdict)}</b></p>"]
    if ans.lines:
        out.append("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in ans.lines) + "</ul>")
    if ans.figure in figures:
        f = figures[ans.figure]
        data = base64.b64encode(f.png.read_bytes()).decode("ascii")
        out.append(f"<figure><img alt='{_e(f.caption)}' src='data:image/png;base64,{data}' style='max-width:760px'>"
                   f"<figcaption>{_e(f.caption)}</figcaption></figure>")
    return "\n".join(out)


def _md_answer(ans: Answer, figures: dict[str, Figure]) -> list[str]:
    out = [f"### {md.text(ans.title)}", "", f"**{md.text(ans.verdict)}**", ""] + [f"- {md.text(line)}" for line in ans.lines]
    if ans.figure in figures:
        f = figures[ans.figure]
        out += ["", f"![{md.text(f.caption)}](plots/{f.png.name})"]
    return out + [""]


def _html_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    columns = [c for c in columns if c in frame.columns]
    if frame.empty or not columns:
        return "<p class='muted'>(none)</p>"
    align = {c: _align(frame[c]) for c in columns}
    head = "".join(f"<th class='{align[c]}'>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{align[c]}'>{_e(_cell(v))}</td>" for c, v in zip(columns, row, strict=True))
        + "</tr>"
        for row in frame[columns].itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    columns = [c for c in columns if c in frame.columns]
    if frame.empty or not columns:
        return "(none)"
    lines = ["| " + " | ".join(md.text(c, starts_block=False) for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += [
        "| " + " | ".join(md.text(_cell(v), starts_block=False) for v in row) + " |"
        for row in frame[columns].itertuples(index=False)
    ]
    return "\n".join(lines)


def _cell(v) -> str:
    """Numbers as a reader wants them: 3 significant digits below 1, 2 decimals, thousands separators above 1e4."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def _align(series: pd.Series) -> str:
    return "" if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) else "t"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)

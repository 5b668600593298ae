"""The report's sections, built from the results files alone: the glance, the task, the design
choices (from ``docs/``), each part's own sections (``partN.sections``), the evaluations, the
environment and the bibliography."""

from __future__ import annotations

import json
import os
from pathlib import Path

from jaxcnn.document import Bullets, Figure, Section, Table, Text
from jaxcnn.errors import JaxcnnError
from jaxcnn.evaluation.evaluate import confused_table, evaluation_files, validation_table, weakest_classes_table
from jaxcnn.experiments import PARTS, STUDY_RUNS, part1, part2, part3
from jaxcnn.experiments.results import ABLATION_FILE, environment, read_results, results_of
from jaxcnn.report.glance import glance_section


DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def task_section() -> Section:
    return Section("The task", [
        Text("A reproducible transfer-learning study on handwritten characters in JAX/Flax, in three parts:"),
        Bullets(list(PARTS.values())),
        Text("Every number below is read from the results files the parts wrote; "
             "`python -m jaxcnn report` rebuilds this page without training anything."),
    ])


def design_section(docs_dir: Path, out_dir: Path) -> Section:
    """Links each part's design document and lists what it covers."""
    blocks = []
    for part in PARTS:
        doc = docs_dir / f"{part}.md"
        if not doc.is_file():
            blocks.append(Text(f"{part}: no design document yet (`docs/{part}.md`)."))
            continue
        lines = doc.read_text().splitlines()
        title = next((line.lstrip("# ") for line in lines if line.startswith("# ")), part)
        headings = [line[3:] for line in lines if line.startswith("## ") and not is_bibliography(line[3:])]
        blocks.append(Text(f"[{title}]({os.path.relpath(doc, out_dir)}) covers:"))
        blocks.append(Bullets(headings))
    return Section("Design choices", blocks)


def evaluation_sections(workdir: Path) -> list[Section]:
    title = "Hidden-test evaluation"
    files = evaluation_files(workdir)
    if not files:
        return [Section(title, [Text("No evaluation yet: run `python -m jaxcnn evaluate --ckpt WORKDIR/part1 "
                                     "--data DIR_OR_ZIP` once the held-out writers arrive.")])]
    sections = [Section(title, [Text(f"{len(files)} evaluation(s) by `python -m jaxcnn evaluate`, "
                                     "each of a saved run's ensemble.")])]
    for path in files:
        report = json.loads(path.read_text())
        name = path.stem.removeprefix("eval_")
        blocks = [Text(f"`{path.relative_to(workdir)}`: the run in `{path.parent.relative_to(workdir)}` "
                       f"scored on `{name}`."),
                  validation_table(report, report.get("seeds", []), f"data set `{name}`"),
                  weakest_classes_table(report), confused_table(report)]
        if path.with_suffix(".png").is_file():
            blocks.append(Figure(path.with_suffix(".png"), f"Confusion matrix on `{name}` (rows normalised)."))
        sections.append(Section(f"{path.parent.relative_to(workdir).as_posix()} on {name}", blocks, 3))
    return sections


def environment_section(results: list[dict]) -> Section:
    """Versions and device: as recorded by a run if any recorded them, else this process's, labelled so."""
    recorded = next((r["environment"] for r in results if r and "environment" in r), None)
    if recorded:
        rows = [[key, str(value)] for key, value in recorded.items()]
        note = "As recorded by the training run."
    else:
        rows = [[key, str(value)] for key, value in environment().items()]
        note = ("The results files do not record their environment: these are of the process that wrote "
                "this report, which may differ from the one that trained.")
    return Section("Environment", [Text(note), Table(["what", "value"], rows)])


def is_bibliography(heading: str) -> bool:
    return heading.strip().lower() in ("bibliography", "references")


def bibliography(docs_dir: Path) -> list[str]:
    """The entries of every design document's Bibliography (or References) section, merged and sorted."""
    entries = []
    for doc in sorted(docs_dir.glob("*.md")):
        inside = False
        for line in doc.read_text().splitlines():
            if line.startswith("## "):
                inside = is_bibliography(line[3:])
            elif inside and line.startswith("- "):
                entries.append(line[2:].strip())
            elif inside and entries and line.startswith("  ") and line.strip():  # an entry's next line
                entries[-1] += " " + line.strip()
    return sorted(set(entries), key=str.casefold)


def readable(where: Path, read, *args):
    """``read(*args)``, with a one-line error naming ``where`` when a results file lacks a field."""
    try:
        return read(*args)
    except KeyError as err:
        raise JaxcnnError(f"{where}: a results file has no field {err} (written by another version? "
                          "run the part again)") from err


def build_sections(workdir: Path, out_dir: Path, docs_dir: Path = DOCS_DIR) -> list[Section]:
    """Every section, in order; part 1's learning curves are drawn under ``out_dir/report``."""
    workdir, out_dir = Path(workdir), Path(out_dir)
    results = {part: results_of(workdir / part) for part in PARTS}
    cv = results_of(workdir / STUDY_RUNS["cv"])
    ablation = read_results(workdir / STUDY_RUNS["ablation"] / ABLATION_FILE)
    return [readable(workdir, glance_section, workdir, results, cv), task_section(), design_section(docs_dir, out_dir),
            *readable(workdir / "part1", part1.sections, results["part1"], workdir / "part1", cv, ablation,
                      out_dir / "report"),
            *readable(workdir / "part2", part2.sections, results["part2"], workdir / "part2"),
            *readable(workdir / "part3", part3.sections, results["part3"], workdir / "part3"),
            *evaluation_sections(workdir), environment_section(list(results.values())),
            Section("Bibliography", [Bullets(bibliography(docs_dir))] if docs_dir.is_dir()
                    else [Text("The design documents (`docs/`) are not installed here.")])]

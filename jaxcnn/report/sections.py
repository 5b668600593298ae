"""The report's sections, built from the results files alone: the glance, the task, the design
choices (from ``docs/``), each part's own sections (``partN.sections``), the evaluations, the
environment and the bibliography."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from jaxcnn.document import Bullets, Figure, Section, Table, Text
from jaxcnn.errors import JaxcnnError
from jaxcnn.evaluation.evaluate import confused_table, evaluation_files, validation_table, weakest_classes_table
from jaxcnn.experiments import PARTS, STUDY_RUNS, part1, part2, part3
from jaxcnn.evaluation.plots import plot_confusion
from jaxcnn.experiments.records import confusion_class_names
from jaxcnn.experiments.results import ABLATION_FILE, environment, read_results, results_of
from jaxcnn.report.glance import glance_section, part1_evaluations


DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def task_section() -> Section:
    return Section("The task", [
        Text("A reproducible transfer-learning study on handwritten characters in JAX/Flax, in three parts:"),
        Bullets(list(PARTS.values())),
        Text("Every number below is read from the results files the parts wrote; "
             "`python -m jaxcnn report` rebuilds this page without training anything."),
    ])


def doc_reference(doc: Path, out_dir: Path) -> str:
    """A design document named by its path in the repository (`docs/part1.md`), linked only where
    the report is written inside the repository too, so that the relative link moves with both."""
    repo, name = doc.parent.parent.resolve(), f"{doc.parent.name}/{doc.name}"
    if not Path(out_dir).resolve().is_relative_to(repo):
        return f"`{name}`"
    return f"[`{name}`]({Path(os.path.relpath(doc.resolve(), Path(out_dir).resolve())).as_posix()})"


def design_section(docs_dir: Path, out_dir: Path) -> Section:
    """Names each part's design document and lists what it covers."""
    blocks = []
    for part in PARTS:
        doc = docs_dir / f"{part}.md"
        if not doc.is_file():
            blocks.append(Text(f"{part}: no design document yet (`docs/{part}.md`)."))
            continue
        lines = doc.read_text().splitlines()
        title = next((line.lstrip("# ") for line in lines if line.startswith("# ")), part)
        headings = [line[3:] for line in lines if line.startswith("## ") and not is_bibliography(line[3:])]
        blocks.append(Text(f"{title} ({doc_reference(doc, out_dir)}) covers:"))
        blocks.append(Bullets(headings))
    return Section("Design choices", blocks)


def evaluation_sections(workdir: Path, figure_dir: Path) -> list[Section]:
    """One section per ``evaluate`` report under ``workdir``, its confusion matrix redrawn from it
    into ``figure_dir``."""
    title = "Hidden-test evaluation"
    files = evaluation_files(workdir)
    if not files:
        return [Section(title, [Text("No evaluation yet: run `python -m jaxcnn evaluate --ckpt WORKDIR/part1 "
                                     "--data DIR_OR_ZIP` once the held-out writers arrive.")])]
    sections = [Section(title, [Text(f"{len(files)} evaluation(s) by `python -m jaxcnn evaluate`, "
                                     "each of a saved run's ensemble.")])]
    for path in files:
        report = json.loads(path.read_text())
        name, where = path.stem.removeprefix("eval_"), path.relative_to(workdir)
        blocks = [Text(f"`{where}`: the run in `{path.parent.relative_to(workdir)}` scored on `{name}`."),
                  validation_table(report, report.get("seeds", []), f"data set `{name}`"),
                  weakest_classes_table(report), confused_table(report), confusion_figure(report, where, figure_dir)]
        sections.append(Section(f"{path.parent.relative_to(workdir).as_posix()} on {name}", blocks, 3))
    return sections


def confusion_figure(report: dict, where: Path, figure_dir: Path):
    """An evaluation's confusion matrix drawn from its report, or a line that names it missing."""
    caption = f"Confusion matrix on `{where.stem.removeprefix('eval_')}` (rows normalised)."
    if "confusion" not in report:
        return Text(f"Figure of `{where}`'s confusion matrix is missing: the report holds no `confusion`.")
    path = figure_dir / where.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion(report["confusion"], confusion_class_names(report), path, f"{where.parent.as_posix()}")
    return Figure(path, caption)


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


BIBLIOGRAPHY = "bibliography.md"  # in docs/: one entry per work, ``- [Key] Authors (year). Title. Venue.``


def bibliography(docs_dir: Path) -> list[str]:
    """The entries of ``docs/bibliography.md``, each a line ``- [Key] ...`` (an entry may continue on
    indented lines), in its order; a key given twice is an error."""
    entries = []
    for line in (docs_dir / BIBLIOGRAPHY).read_text().splitlines():
        if line.startswith("- "):
            entries.append(line[2:].strip())
        elif entries and line.startswith("  ") and line.strip():
            entries[-1] += " " + line.strip()
    keys = [entry.partition("]")[0] for entry in entries]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise JaxcnnError(f"{docs_dir / BIBLIOGRAPHY}: the keys {', '.join(k + ']' for k in twice)} are given twice")
    return entries


def bibliography_section(docs_dir: Path) -> Section:
    if not (docs_dir / BIBLIOGRAPHY).is_file():
        return Section("Bibliography", [Text(f"The design documents (`docs/{BIBLIOGRAPHY}`) are not installed here.")])
    return Section("Bibliography", [Bullets(bibliography(docs_dir))])


MACHINE_PATH = re.compile(r"(?<![\w.~+=:/-])/[\w.+@-]+(?:/[\w.+@-]*)+")  # /x/y...: not a URL, not base64


def without_machine_paths(section: Section, workdir: Path) -> Section:
    """``section`` with every absolute path in its text made portable: under ``workdir`` as
    ``WORKDIR/...``, elsewhere as ``.../<name>`` (the machine's folders mean nothing to a reader)."""
    root = Path(workdir).resolve()

    def portable(match) -> str:
        path = Path(match.group(0))
        if path.is_relative_to(root):
            return (Path("WORKDIR") / path.relative_to(root)).as_posix()
        return f".../{path.name}"

    scrub = lambda text: MACHINE_PATH.sub(portable, text)
    blocks = []
    for block in section.blocks:
        if isinstance(block, Text):
            block = Text(scrub(block.text))
        elif isinstance(block, Bullets):
            block = Bullets([scrub(item) for item in block.items])
        elif isinstance(block, Table):
            block = Table([scrub(h) for h in block.header], [[scrub(c) for c in row] for row in block.rows],
                          scrub(block.caption))
        elif isinstance(block, Figure):
            block = Figure(block.path, scrub(block.caption))
        blocks.append(block)
    return Section(section.title, blocks, section.level)


def readable(where: Path, read, *args):
    """``read(*args)``, with a one-line error naming ``where`` when a results file lacks a field."""
    try:
        return read(*args)
    except KeyError as err:
        raise JaxcnnError(f"{where}: a results file has no field {err} (written by another version? "
                          "run the part again)") from err


def build_sections(workdir: Path, out_dir: Path, docs_dir: Path = DOCS_DIR) -> list[Section]:
    """Every section, in order; every figure drawn from the results goes under ``out_dir/report``,
    and no absolute path of this machine is left in their text (``without_machine_paths``)."""
    workdir, out_dir = Path(workdir), Path(out_dir)
    figures = out_dir / "report"
    results = {part: results_of(workdir / part) for part in PARTS}
    cv = results_of(workdir / STUDY_RUNS["cv"])
    ablation = read_results(workdir / STUDY_RUNS["ablation"] / ABLATION_FILE)
    sections = [readable(workdir, glance_section, workdir, results, cv), task_section(), design_section(docs_dir, out_dir),
                *readable(workdir / "part1", part1.sections, results["part1"], workdir / "part1", cv, ablation, figures,
                          part1_evaluations(workdir)),
                *readable(workdir / "part2", part2.sections, results["part2"], workdir / "part2", figures / "part2"),
                *readable(workdir / "part3", part3.sections, results["part3"], workdir / "part3", figures / "part3"),
                *evaluation_sections(workdir, figures / "evaluations"), environment_section(list(results.values())),
                bibliography_section(docs_dir)]
    return [without_machine_paths(section, workdir) for section in sections]

"""The whole study in one command: parts 1, 2 and 3 in order, reusing finished runs, then the report.

Each part runs in ``WORKDIR/partN`` through its module's ``get_config`` and ``run``. A part whose
``results.json`` holds the requested configuration is finished and is not run again; a part not
written yet is skipped with a message. An interrupted part is continued with ``resume=True``;
without it, ``fit`` refuses to touch the interrupted run, as every command does. The runs a part
reads from another (its ``UPSTREAM``: part 1's trunk, part 2's B) are passed as arguments, from
their places in ``WORKDIR``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from jaxcnn.config import to_dict
from jaxcnn.errors import JaxcnnError
from jaxcnn.experiments import PARTS, PROFILES, UPSTREAM, part_module
from jaxcnn.experiments.results import RESULTS_FILE, results_of
from jaxcnn.progress import study_meter
from jaxcnn.report import write_report

logger = logging.getLogger("jaxcnn")


def upstream_runs(part: str, workdir: Path) -> dict[str, Path]:
    """The runs of other parts that ``part`` reads (``UPSTREAM``), at their places in ``workdir``:
    its ``run``'s keyword arguments."""
    return {argument: workdir / place for argument, (place, _) in UPSTREAM[part].items()}


def finished(part_dir: Path, cfg) -> bool:
    """True when ``part_dir`` holds the results of a run of exactly ``cfg``.

    Results of another configuration are an error: the study would otherwise mix two studies.
    """
    results = results_of(part_dir)
    if results is None:
        return False
    if results["config"] != to_dict(cfg):
        raise JaxcnnError(f"{part_dir / RESULTS_FILE}: a finished run of another configuration (another --profile?); "
                          f"use another --workdir, or delete {part_dir} to run it again")
    return True


def run_study(data_root: Path, workdir: Path, *, profile: str = "full", resume: bool = False, cache_dir=None,
              out: str | Path | None = None, parts=tuple(PARTS)) -> dict[str, str]:
    """Runs each of ``parts`` not yet finished in ``profile`` (``PROFILES``), then writes the report
    from ``workdir`` (into ``workdir`` unless ``out`` puts it elsewhere). While the parts train, the
    log shows the whole study's progress and ETA (``progress.StudyMeter``).

    Returns what happened to each part: "ran" or "reused".
    """
    workdir = Path(workdir)
    modules = {name: part_module(name) for name in parts}
    configs = {name: module.get_config(profile) for name, module in modules.items()}
    to_run = [name for name in parts if not finished(workdir / name, configs[name])]
    planned = sum(modules[name].planned_images(configs[name]) for name in to_run)
    logger.info("study, profile %s: %s", profile, PROFILES[profile])
    status = {}
    with study_meter(planned) as meter:
        logger.info(meter.line())
        for name in parts:
            part_dir = workdir / name
            if name not in to_run:
                logger.info("%s: finished run in %s reused", name, part_dir)
                status[name] = "reused"
                continue
            logger.info("%s: running in %s%s", name, part_dir, " (resuming)" if resume else "")
            modules[name].run(configs[name], Path(data_root), part_dir, resume=resume, cache_dir=cache_dir,
                              **upstream_runs(name, workdir))
            status[name] = "ran"
    markdown, page = write_report(workdir, out)
    logger.info("report: %s and %s", markdown, page)
    return status

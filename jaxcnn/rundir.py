"""A run's work directory, protected as a whole: only the run that owns it writes there.

A run claims its directory before writing anything: the claim checks what is there, then writes
the marker ``.jaxcnn-run``, a JSON record of the configs of the roles that own the directory
(``fit`` for the training loop; ``part1``, ``part2``... for the part that writes ``results.json``).
A directory with a marker is a jaxcnn run: ``resume`` continues it only with the same config
(the differing fields are named), ``overwrite`` empties it. A directory with a run's files but no
marker, or with anything else in it, is never emptied. Other commands that write files (evaluate,
report) ask ``check_output`` first, so they never replace a run's records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from jaxcnn.errors import JaxcnnError
from jaxcnn.processes import is_primary, on_primary

MARKER = ".jaxcnn-run"
MARKER_TMP = MARKER + ".tmp"  # written, then renamed to MARKER: a leftover is an interrupted claim
RECORDS = ("config.json", "results.json", "metrics.jsonl", MARKER)  # a run's records, never written by others


class RunExistsError(JaxcnnError):
    """The work directory already holds a run and neither resume nor overwrite was asked for."""


class ConfigMismatchError(JaxcnnError):
    """``resume`` with a config that differs from the one the run was started with."""


def _cannot_use(workdir: Path, err: OSError) -> JaxcnnError:
    return JaxcnnError(f"{workdir}: cannot use it as the work directory ({err.strerror or err})")


def read_marker(workdir: Path) -> dict | None:
    """The marker's ``{role: config}``, or None when ``workdir`` is not marked as a jaxcnn run."""
    path = Path(workdir) / MARKER
    if not path.is_file():
        return None
    try:
        configs = json.loads(path.read_text())["configs"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise JaxcnnError(f"{path}: unreadable run marker ({err}); move the directory away or delete it") from None
    return configs if isinstance(configs, dict) else {}


def run_files(workdir: Path) -> list[str]:
    """The names in ``workdir`` that only a run writes: its records and a non-empty ``checkpoints/``."""
    workdir = Path(workdir)
    found = [name for name in RECORDS if (workdir / name).exists()]
    ckpts = workdir / "checkpoints"
    if ckpts.is_dir() and any(ckpts.iterdir()):
        found.append("checkpoints/")
    return found


def with_defaults(saved, defaults):
    """``saved`` with each field it lacks taken from ``defaults`` (at any depth): a field added to the
    code since the run was saved counts as its default, which is what the run did without it."""
    if not isinstance(saved, dict) or not isinstance(defaults, dict):
        return saved
    return {**{k: v for k, v in defaults.items() if k not in saved},
            **{k: with_defaults(v, defaults.get(k)) for k, v in saved.items()}}


def config_diff(saved, new, prefix: str = "") -> list[str]:
    """``field: saved -> new`` for every leaf that differs between two config dicts (dotted paths)."""
    if isinstance(saved, dict) and isinstance(new, dict):
        return [line for key in sorted(set(saved) | set(new), key=str)
                for line in config_diff(saved.get(key, "(absent)"), new.get(key, "(absent)"), f"{prefix}{key}.")]
    return [] if saved == new else [f"{prefix.rstrip('.')}: {json.dumps(saved)} -> {json.dumps(new)}"]


def claim(workdir: str | Path, role: str, config: dict, *, defaults: dict | None = None, resume: bool = False,
          overwrite: bool = False) -> Path:
    """Makes ``workdir`` the directory of this run (``role`` with ``config``), or refuses.

    Nothing is written before every check has passed. A fresh directory must be missing or empty;
    ``resume`` needs the saved config of ``role`` to equal ``config`` (a field it lacks counts as its
    value in ``defaults``, ``to_dict`` of a default config, if given); ``overwrite`` empties a
    marked directory, never another. ``fit`` may join a directory its part has claimed.
    Raises RunExistsError, ConfigMismatchError or JaxcnnError (unusable directory), one line each.
    Of several processes, process 0 checks and writes; the others wait for its answer.
    """
    on_primary(lambda: _claim(Path(workdir), role, config, defaults, resume, overwrite), f"{workdir}: claiming it")
    return Path(workdir)


def _claim(workdir: Path, role: str, config: dict, defaults: dict | None, resume: bool, overwrite: bool) -> None:
    try:
        marker = read_marker(workdir)
        existing = sorted(p.name for p in workdir.iterdir() if p.name != MARKER_TMP) if workdir.is_dir() else []
        if workdir.exists() and not workdir.is_dir():
            raise JaxcnnError(f"{workdir}: is a file, not a work directory: choose another --workdir")
        if marker is None:
            _check_unmarked(workdir, role, config, defaults, existing, resume)
        elif role in marker:
            if resume:
                _check_same_config(workdir, marker[role], config, defaults)
                return
            if not overwrite:
                raise RunExistsError(f"{workdir} already holds a run: pass --resume to continue it "
                                     "or --overwrite to delete it and start again")
            for path in sorted(workdir.iterdir(), key=lambda p: p.name == MARKER):  # the marker last
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            marker = None
        elif role != "fit":  # the training loop joins its part's directory; parts never share one
            raise RunExistsError(f"{workdir} holds a run of {', '.join(sorted(marker))}, not of {role}: "
                                 "choose another --workdir")
        workdir.mkdir(parents=True, exist_ok=True)
        _write_marker(workdir, {**(marker or {}), role: config})
    except OSError as err:
        raise _cannot_use(workdir, err) from err


def _check_unmarked(workdir: Path, role: str, config: dict, defaults: dict | None, existing: list[str],
                    resume: bool) -> None:
    """An unmarked directory is used when empty, or resumed when it holds a run of an older jaxcnn
    (before markers) with the same config."""
    found = run_files(workdir)
    if found and resume:
        legacy = workdir / ("config.json" if role == "fit" else "results.json")
        if legacy.is_file():
            try:
                saved = json.loads(legacy.read_text())
            except ValueError as err:
                raise JaxcnnError(f"{legacy}: unreadable ({err}); cannot check the config to resume") from None
            _check_same_config(workdir, saved if role == "fit" else saved.get("config"), config, defaults)
        return
    if found:
        raise RunExistsError(f"{workdir}: holds a run's files ({', '.join(found)}) but no {MARKER} marker (an "
                             "older jaxcnn's run?): pass --resume to continue it with its config, or move it away")
    if existing:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise RunExistsError(f"{workdir}: not empty ({shown}) and not a jaxcnn run: "
                             "choose a new or empty work directory (--workdir)")


def _check_same_config(workdir: Path, saved: dict, config: dict, defaults: dict | None) -> None:
    diff = config_diff(with_defaults(saved, defaults), config)
    if diff:
        raise ConfigMismatchError(f"{workdir}: --resume with a config that differs from the saved one "
                                  f"({'; '.join(diff)}); resume with the same settings, or use another "
                                  "--workdir (or --overwrite) for the new config")


def _write_marker(workdir: Path, configs: dict) -> None:
    tmp = workdir / MARKER_TMP
    tmp.write_text(json.dumps({"configs": configs}, indent=1) + "\n")
    tmp.replace(workdir / MARKER)


def run_dir_of(path: str | Path) -> Path | None:
    """The run directory holding ``path`` (``path`` itself or a parent, marked or with
    checkpoints), or None."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if read_marker(folder) is not None or "checkpoints/" in run_files(folder):
            return folder
    return None


def check_output(path: str | Path, *, own_run: str | Path | None = None, prefix: str = "",
                 flag: str = "the output path") -> Path:
    """Refuses to write ``path`` where it would replace a run's files; returns ``path``.

    Inside a run directory only ``own_run``'s files whose names start with ``prefix`` may be
    written (and never inside ``checkpoints/``); anywhere, a run's records are never replaced.
    """
    path = Path(path)
    run = run_dir_of(path.parent)
    if path.name in RECORDS or (path.is_dir() and run_dir_of(path) == path.absolute()):
        raise JaxcnnError(f"{path}: a run's own file; refusing to replace it: choose another {flag}")
    if run is None:
        return path
    inside_checkpoints = "checkpoints" in path.absolute().relative_to(run).parts
    own = own_run is not None and Path(own_run).absolute() == run
    if not own or inside_checkpoints or not path.name.startswith(prefix):
        raise JaxcnnError(f"{path}: inside the run directory {run}, whose files only that run writes: "
                          f"choose another {flag}")
    return path


def write_json(path: Path, data) -> None:
    """Writes JSON atomically (temp file then rename), so a reader never sees half a file; of
    several processes, only process 0 writes."""
    if not is_primary():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)

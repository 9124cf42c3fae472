"""A study's arm records as a file: what ``study-report`` exports beside its report, and reads back
where the study's database is not at hand (a study committed under ``docs/results/``).

Every effect, interval and verdict of a report is a function of the study file, its drawn configs
(``study.json``) and these records (one per arm: its config, seed, dropout, target, variant and
every set of weights' summaries and per-length TV), so a folder holding ``study.json`` and
``records.json.gz`` can be re-analysed by anyone, in any way, without retraining: per dropout
rate, per stratum, with another interval. gzip-compressed JSON with a fixed timestamp, so the same
records give the same bytes.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from training import atomic
from training.errors import WorkbenchError
from training.experiments.runner import LOCAL_DB, read_state

RECORDS_FILE = "records.json.gz"


def write_records(path: str | Path, records: list[dict]) -> None:
    """Write ``records`` to ``path`` (gzip JSON, reproducible bytes), atomically."""
    data = gzip.compress(json.dumps(records, separators=(",", ":")).encode(), mtime=0)
    atomic.write_with(path, lambda p: Path(p).write_bytes(data))


def read_records(path: str | Path) -> list[dict]:
    """The arm records in ``path``; a one-line error for a file that is not one."""
    path = Path(path)
    try:
        records = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise WorkbenchError(f"{path} is not a study's records file ({type(e).__name__})") from None
    keys = ("config", "seed", "dropout", "target", "error")
    if not isinstance(records, list) or not all(isinstance(r, dict) and all(k in r for k in keys) for r in records):
        raise WorkbenchError(f"{path} is not a study's records file (a list of arm records expected)")
    return records


def study_records(study_dir: str | Path) -> tuple[dict, list[dict], list[dict]]:
    """(study file, drawn configs, arm records) of a study folder: from its database when the
    folder has one (or names a server), else from its ``records.json.gz``."""
    from training.experiments.study.run import STATE_KEYS, check_state, completed_records, open_study

    study_dir = Path(study_dir)
    meta = read_state(study_dir / "study.json", STATE_KEYS, "study", check_state)
    if meta["storage"] == LOCAL_DB and not (study_dir / LOCAL_DB).is_file() and (study_dir / RECORDS_FILE).is_file():
        return meta["spec"], meta["configs"], read_records(study_dir / RECORDS_FILE)
    spec, configs, study = open_study(study_dir)
    return spec, configs, completed_records(study)

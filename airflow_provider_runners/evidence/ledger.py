"""Append-only, hash-chained evidence entries, stored through Airflow's ObjectStoragePath.

Layout under the base URL (``[runners] evidence_path``, default
``file://$AIRFLOW_HOME/runners/evidence``; ``s3://`` and ``gs://`` work with
``[runners] evidence_conn_id``)::

    <base>/<dag_id>/<run_id>/<lineage_key>/000001-provision.json
                                           000002-work.json
                                           000003-teardown.json
                                           HEAD                  {"seq": 3, "hash": "sha256:..."}

One chain per runner lineage. Each entry carries ``seq``, ``prev_hash`` and its own ``hash``
(sha256 of the canonical JSON of the entry without ``hash``). :func:`verify_chain` recomputes
every hash and link, checks that ``seq`` has no gaps and that HEAD names the last entry, so
an edited, deleted or inserted entry is detected. (HEAD itself can be rewritten by someone
who can also rewrite entries: for tamper-proof storage use a bucket with object lock /
retention; the chain makes the tampering visible, the bucket makes it impossible.)

Entries are created with exclusive-create where the store supports it, so two tasks
appending to the same chain at once get consecutive numbers instead of overwriting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.evidence.redact import redact

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

SCHEMA = "airflow-provider-runners/evidence/v1"
_ENTRY_RE = re.compile(r"^(\d{6})-([a-z_]+)\.json$")
_SAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_APPEND_TRIES = 20


def _conf(key: str) -> str | None:
    value = os.environ.get(f"AIRFLOW__RUNNERS__{key.upper()}")
    if value:
        return value
    try:
        from airflow.configuration import conf

        return conf.get("runners", key, fallback=None) or None
    except Exception:  # noqa: BLE001 - any config error means "not configured"
        return None


def default_base_url() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return "file://" + os.path.join(os.path.abspath(home), "runners", "evidence")


def ledger_root(base_url: str | None = None) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    url = base_url or _conf("evidence_path") or default_base_url()
    conn_id = _conf("evidence_conn_id")
    return ObjectStoragePath(url, conn_id=conn_id) if conn_id else ObjectStoragePath(url)


def safe_part(text: str) -> str:
    """A path segment that is valid on every object store."""
    return _SAFE_RE.sub("_", text).strip("._") or "_"


def canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return "sha256:" + hashlib.sha256(canonical(body)).hexdigest()


def chain_dir(root: ObjectStoragePath, dag_id: str, run_id: str, lineage_key: str) -> ObjectStoragePath:
    return root / safe_part(dag_id) / safe_part(run_id) / safe_part(lineage_key)


def _entries(chain: ObjectStoragePath) -> list[tuple[int, ObjectStoragePath]]:
    if not chain.exists():
        return []
    found = []
    for child in chain.iterdir():
        match = _ENTRY_RE.match(child.name)
        if match:
            found.append((int(match.group(1)), child))
    return sorted(found, key=lambda item: item[0])


def append(
    dag_id: str,
    run_id: str,
    lineage_key: str,
    event: str,
    payload: dict[str, Any],
    base_url: str | None = None,
) -> dict[str, Any]:
    """Append one redacted entry to the chain of ``lineage_key``; return the entry written."""
    chain = chain_dir(ledger_root(base_url), dag_id, run_id, lineage_key)
    chain.mkdir(parents=True, exist_ok=True)
    body = redact(payload)
    for _ in range(_MAX_APPEND_TRIES):
        existing = _entries(chain)
        if existing:
            seq = existing[-1][0] + 1
            prev_hash = json.loads(existing[-1][1].read_text())["hash"]
        else:
            seq, prev_hash = 1, None
        entry = {
            "schema": SCHEMA,
            "seq": seq,
            "prev_hash": prev_hash,
            "recorded_at": datetime.now(UTC).isoformat(),
            "lineage_key": lineage_key,
            "dag_id": dag_id,
            "run_id": run_id,
            "event": event,
            **body,
        }
        entry["hash"] = entry_hash(entry)
        target = chain / f"{seq:06d}-{safe_part(event)}.json"
        if _create_exclusive(target, json.dumps(entry, indent=1, sort_keys=True, default=str).encode()):
            (chain / "HEAD").write_text(json.dumps({"seq": seq, "hash": entry["hash"]}))
            return entry
    raise RuntimeError(f"could not append to evidence chain {chain} after {_MAX_APPEND_TRIES} tries")


def _create_exclusive(path: ObjectStoragePath, data: bytes) -> bool:
    try:
        with path.open("xb") as fh:
            fh.write(data)
        return True
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):  # store without exclusive create
        if path.exists():
            return False
        path.write_bytes(data)
        return True


@dataclass
class ChainReport:
    path: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(chain: ObjectStoragePath) -> ChainReport:
    """Recompute hashes and links; report every problem found (empty list: intact)."""
    report = ChainReport(path=str(chain))
    prev_hash: str | None = None
    expected_seq = 1
    for seq, path in _entries(chain):
        try:
            entry = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError) as exc:
            report.problems.append(f"{path.name}: unreadable ({exc})")
            continue
        report.entries.append(entry)
        if seq != expected_seq:
            report.problems.append(f"{path.name}: expected seq {expected_seq}: an entry is missing")
        if entry.get("seq") != seq:
            report.problems.append(f"{path.name}: seq field {entry.get('seq')} does not match file name")
        if entry.get("hash") != entry_hash(entry):
            report.problems.append(f"{path.name}: hash mismatch: the entry was edited")
        if entry.get("prev_hash") != prev_hash:
            report.problems.append(f"{path.name}: prev_hash does not link to the entry before it")
        prev_hash = entry.get("hash")
        expected_seq = seq + 1
    head_path = chain / "HEAD"
    if head_path.exists():
        head = json.loads(head_path.read_text())
        if head.get("seq") != expected_seq - 1 or head.get("hash") != prev_hash:
            report.problems.append(
                f"HEAD names seq {head.get('seq')} but the chain ends at seq {expected_seq - 1}: "
                "an entry at the end is missing"
            )
    elif report.entries:
        report.problems.append("HEAD is missing")
    if not report.entries and not report.problems:
        report.problems.append("no entries")
    return report


def iter_chains(
    dag_id: str | None = None, run_id: str | None = None, base_url: str | None = None
) -> Iterator[ObjectStoragePath]:
    """Every chain directory under the ledger root, optionally for one DAG / DAG run."""
    root = ledger_root(base_url)
    if not root.exists():
        return
    dags = [root / safe_part(dag_id)] if dag_id else sorted(root.iterdir(), key=lambda p: p.name)
    for dag_dir in dags:
        if not dag_dir.is_dir():
            continue
        runs = [dag_dir / safe_part(run_id)] if run_id else sorted(dag_dir.iterdir(), key=lambda p: p.name)
        for run_dir in runs:
            if not run_dir.is_dir():
                continue
            for chain in sorted(run_dir.iterdir(), key=lambda p: p.name):
                if chain.is_dir():
                    yield chain

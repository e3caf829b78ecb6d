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

**Once per event.** An append may carry an ``event_key`` (:func:`event_key`: dag, run, task,
map index, try, event): if an entry with that key is already in the chain, nothing is written
and that entry is returned — a callback run twice (Airflow may run a failure callback both in
the task and in the dag-processor) records one entry.

**One end per round.** An entry that records the end of the lineage's runner is written with
``terminal=True`` (the teardown task, the reaper, a kill, a failed last provision, the backstop
observed afterwards). A chain is a sequence of *rounds*; a round ends at its terminal entry, and
a ``provision`` entry after a terminal entry starts the next round (a retry or a cleared task
making a new runner). A second terminal append in a round that already ended writes nothing and
returns the first: whoever ends the runner, the chain says so once. :func:`completeness_problems`
checks that every round has exactly one terminal entry (``evidence verify --complete``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_runners.core.redact import redact
from airflow_provider_runners.core.settings import setting
from airflow_provider_runners.exceptions import EvidenceError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)
SCHEMA = "airflow-provider-runners/evidence/v1"
_ENTRY_RE = re.compile(r"^(\d{6})-([a-z_]+)\.json$")
_SAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_APPEND_TRIES = 20


def _conf(key: str) -> str | None:
    return setting(key)


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


#: Fields the ledger owns; a payload cannot set them.
CHAIN_FIELDS = frozenset(
    {
        "schema",
        "seq",
        "prev_hash",
        "recorded_at",
        "lineage_key",
        "dag_id",
        "run_id",
        "event",
        "hash",
        "event_key",
        "terminal",
    }
)


def event_key(
    dag_id: str, run_id: str, task_id: str, map_index: int | None, try_number: Any, event: str
) -> str:
    """The idempotency key of one event of one task try: at most one entry per key and chain."""
    index = -1 if map_index is None else int(map_index)
    return "|".join((dag_id, run_id, task_id, str(index), str(try_number), event))


def round_end(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The terminal entry that ended the chain's current round, or None while the round is open.

    A ``provision`` entry after the last terminal entry opens a new round."""
    for entry in reversed(entries):
        if entry.get("terminal"):
            return entry
        if entry.get("event") == "provision":
            return None
    return None


def read_entries(chain: ObjectStoragePath) -> list[dict[str, Any]]:
    """Every entry of ``chain`` in order (unreadable ones skipped)."""
    found = []
    for _, path in _entries(chain):
        try:
            found.append(_read_entry(path))
        except EvidenceError:
            continue
    return found


def append(
    dag_id: str,
    run_id: str,
    lineage_key: str,
    event: str,
    payload: dict[str, Any],
    base_url: str | None = None,
    *,
    event_key: str | None = None,
    terminal: bool = False,
) -> dict[str, Any]:
    """Append one redacted entry to the chain of ``lineage_key``; return the entry written.

    With ``event_key``: if the chain already holds an entry with that key, write nothing and
    return it. With ``terminal=True``: if the current round already ended, write nothing and
    return the entry that ended it. Both checks run under the chain's lock (see the module
    docstring).

    Raises ValueError if ``payload`` sets a field the ledger owns (``CHAIN_FIELDS``), and
    EvidenceError if no sequence number could be claimed.
    """
    reserved = CHAIN_FIELDS & payload.keys()
    if reserved:
        raise ValueError(f"evidence payload must not set ledger fields: {sorted(reserved)}")
    chain = chain_dir(ledger_root(base_url), dag_id, run_id, lineage_key)
    chain.mkdir(parents=True, exist_ok=True)
    body = redact(payload)
    with _chain_lock(chain):
        for _ in range(_MAX_APPEND_TRIES):
            existing = _entries(chain)
            if event_key is not None or terminal:
                earlier = [_read_entry(path) for _, path in existing]
                same = next((e for e in earlier if event_key and e.get("event_key") == event_key), None)
                if same is not None:
                    log.info("evidence: %s already recorded as seq %s", event_key, same.get("seq"))
                    return same
                ended = round_end(earlier) if terminal else None
                if ended is not None:
                    log.info(
                        "evidence: %s not recorded: the runner's end is already seq %s (%s)",
                        event,
                        ended.get("seq"),
                        ended.get("event"),
                    )
                    return ended
            seq, prev_hash = (
                (existing[-1][0] + 1, _read_entry(existing[-1][1])["hash"]) if existing else (1, None)
            )
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
            if event_key is not None:
                entry["event_key"] = event_key
            if terminal:
                entry["terminal"] = True
            entry["hash"] = entry_hash(entry)
            target = chain / f"{seq:06d}-{safe_part(event)}.json"
            if _create_exclusive(target, json.dumps(entry, indent=1, sort_keys=True, default=str).encode()):
                _advance_head(chain, seq, entry["hash"])
                return entry
    raise EvidenceError(f"could not append to evidence chain {chain} after {_MAX_APPEND_TRIES} tries")


def _local_path(path: ObjectStoragePath) -> str | None:
    """The filesystem path for a ``file://`` location, else None."""
    return str(path.path) if path.protocol in ("file", "local") else None


@contextmanager
def _chain_lock(chain: ObjectStoragePath) -> Iterator[None]:
    """Serialise appends to one chain on a local filesystem (object stores publish atomically)."""
    local = _local_path(chain)
    if local is None:
        yield
        return
    fd = os.open(local, os.O_RDONLY)  # lock the chain directory itself: no extra file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_entry(path: ObjectStoragePath) -> dict[str, Any]:
    """Read an entry, waiting briefly for one another writer is still publishing (object stores)."""
    for delay in (0.0, 0.05, 0.2, 0.5, 1.0):
        time.sleep(delay)
        try:
            entry: dict[str, Any] = json.loads(path.read_text())
            return entry
        except json.JSONDecodeError:
            continue
    raise EvidenceError(f"evidence entry {path} is unreadable")


def _create_exclusive(path: ObjectStoragePath, data: bytes) -> bool:
    """Publish ``data`` at ``path`` only if nothing is there, never showing a partial file."""
    local = _local_path(path)
    if local is not None:
        tmp = f"{local}.tmp{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, local)  # atomic, and fails if the name is taken
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
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


def _advance_head(chain: ObjectStoragePath, seq: int, digest: str) -> None:
    """Point HEAD at ``seq`` unless it already points further (HEAD never moves backwards)."""
    head = chain / "HEAD"
    try:
        current = json.loads(head.read_text()).get("seq", 0) if head.exists() else 0
    except (json.JSONDecodeError, OSError, AttributeError):
        current = 0
    if current >= seq:
        return
    text = json.dumps({"seq": seq, "hash": digest})
    local = _local_path(head)
    if local is None:
        head.write_text(text)
        return
    tmp = f"{local}.tmp{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, local)


@dataclass
class ChainReport:
    path: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def completeness_problems(entries: list[dict[str, Any]]) -> list[str]:
    """Every round of the chain must end with exactly one terminal entry (see the module
    docstring). Entries recorded after the terminal entry of their round (a late callback)
    are allowed; a second terminal entry, or a round without one, is a problem."""
    problems: list[str] = []
    rounds: list[list[dict[str, Any]]] = [[]]
    for entry in entries:
        if entry.get("event") == "provision" and any(e.get("terminal") for e in rounds[-1]):
            rounds.append([])
        rounds[-1].append(entry)
    for entries_of_round in rounds:
        if not entries_of_round:
            continue
        first = entries_of_round[0].get("seq")
        ends = [e.get("seq") for e in entries_of_round if e.get("terminal")]
        if not ends:
            problems.append(f"round from seq {first}: no terminal entry (nobody recorded the runner's end)")
        elif len(ends) > 1:
            problems.append(
                f"round from seq {first}: {len(ends)} terminal entries (seq {ends}); expected one"
            )
    return problems


def verify_chain(chain: ObjectStoragePath, complete: bool = False) -> ChainReport:
    """Recompute hashes and links; report every problem found (empty list: intact).

    ``complete=True`` also requires every round to end with exactly one terminal entry
    (:func:`completeness_problems`) — for DAG runs that have ended."""
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
        if seq < expected_seq:
            report.problems.append(f"{path.name}: seq {seq} appears twice: an entry was inserted")
        elif seq != expected_seq:
            report.problems.append(f"{path.name}: expected seq {expected_seq}: an entry is missing")
        if entry.get("seq") != seq:
            report.problems.append(f"{path.name}: seq field {entry.get('seq')} does not match file name")
        if entry.get("hash") != entry_hash(entry):
            report.problems.append(f"{path.name}: hash mismatch: the entry was edited")
        if entry.get("prev_hash") != prev_hash:
            report.problems.append(f"{path.name}: prev_hash does not link to the entry before it")
        prev_hash = entry.get("hash")
        expected_seq = seq + 1
    report.problems.extend(_head_problems(chain, expected_seq - 1, prev_hash, bool(report.entries)))
    if complete and report.entries:
        report.problems.extend(completeness_problems(report.entries))
    if not report.entries and not report.problems:
        report.problems.append("no entries")
    return report


def _head_problems(
    chain: ObjectStoragePath, last: int, last_hash: str | None, has_entries: bool
) -> list[str]:
    """HEAD must name the last entry: otherwise entries were removed from, or added after, the end."""
    head_path = chain / "HEAD"
    if not head_path.exists():
        return ["HEAD is missing"] if has_entries else []
    try:
        head = json.loads(head_path.read_text())
        if not isinstance(head, dict):
            raise TypeError(type(head).__name__)
    except (json.JSONDecodeError, TypeError) as exc:
        return [f"HEAD is unreadable ({exc}): it was edited"]
    if head.get("seq") != last:
        what = "an entry at the end is missing" if (head.get("seq") or 0) > last else "entries follow HEAD"
        return [f"HEAD names seq {head.get('seq')} but the chain ends at seq {last}: {what}"]
    if head.get("hash") != last_hash:
        return [f"HEAD hash does not match entry {last}: an entry at the end was replaced"]
    return []


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

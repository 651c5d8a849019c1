"""Checking a store end to end (``blocknerf fsck``) and repairing damaged blocks.

What is checked:

- the manifest reads, and every block it names is in the plan with a valid id;
- every *published* version (the one in use and those published before it that still exist):
  complete, its arrays read and match its checksum, the manifest's checksum matches it, and
  (when a ``load`` callable is given) it loads as a block;
- every complete records revision (capture record + plan) reads, and the published one exists.

``repair`` republishes, for each block whose published version is damaged, the newest intact
version that was published before it (else the newest intact complete version), through a
``republish`` callable (the command passes ``rollback_block``: the intact version is copied into a
new version and published atomically). Damaged earlier versions (not in use) are deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from blocknerf.errors import BlockNerfError

__all__ = ["FsckReport", "Problem", "check_store", "repair_store"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a store."""

    what: str
    """``block`` (a published version), ``history`` (an earlier published version), ``records`` or ``manifest``."""
    message: str
    block_id: str | None = None
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "block": self.block_id, "version": self.version, "message": self.message}


@dataclass(frozen=True)
class FsckReport:
    """What ``check_store`` looked at and found."""

    versions_checked: int = 0
    records_checked: int = 0
    problems: tuple[Problem, ...] = ()
    repaired: tuple[str, ...] = field(default=())
    """Lines saying what ``repair_store`` did."""

    @property
    def clean(self) -> bool:
        return not self.problems

    def damaged_blocks(self) -> list[str]:
        """Blocks whose version in use is damaged (what ``repair`` fixes)."""
        return sorted({p.block_id for p in self.problems if p.what == "block" and p.block_id})

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean, "versions_checked": self.versions_checked, "records_checked": self.records_checked,
            "problems": [p.to_dict() for p in self.problems], "repaired": list(self.repaired),
        }


def _version_problem(store: Any, block_id: str, version: int, expected: str | None, load: Callable[..., Any] | None) -> str | None:
    info = store.version_info(block_id, version)
    if info is None:
        return "missing or incomplete"
    if expected is not None and info.checksum != expected:
        return "its checksum differs from the manifest's"
    try:
        store.read_version(block_id, version, verify=True)
        if load is not None:
            load(store, block_id, version=version)
    except BlockNerfError as exc:
        return str(exc).split(": ", 1)[-1] if str(exc).startswith(str(store.url)) else str(exc)
    return None


def check_store(store: Any, *, load: Callable[..., Any] | None = None) -> FsckReport:
    """Check every published version and every records revision of ``store`` (see the module docstring)."""
    problems: list[Problem] = []
    try:
        manifest = store.manifest()
        planned = set(store.plan.ids)
    except BlockNerfError as exc:
        return FsckReport(problems=(Problem("manifest", str(exc)),))
    versions = 0
    for block_id, entry in sorted(manifest.blocks.items()):
        if block_id not in planned:
            problems.append(Problem("manifest", f"block {block_id} is published but not in the plan", block_id))
            continue
        versions += 1
        problem = _version_problem(store, block_id, entry.version, entry.checksum, load)
        if problem:
            problems.append(Problem("block", f"block {block_id} version {entry.version}: {problem}", block_id, entry.version))
        for old in store.published_history(block_id, entry):
            if store.version_info(block_id, old) is None:
                continue  # deleted by gc, as it should be
            versions += 1
            problem = _version_problem(store, block_id, old, None, None)
            if problem:
                problems.append(Problem("history", f"block {block_id} version {old} (published before): {problem}", block_id, old))
    records = 0
    revisions = store.records_revisions()
    if manifest.records not in revisions:
        problems.append(Problem("records", f"published records revision {manifest.records} is missing or incomplete"))
    for revision in revisions:
        records += 1
        try:
            store.read_capture(revision)
            store.read_plan(revision)
        except BlockNerfError as exc:
            problems.append(Problem("records", f"records revision {revision}: {exc}"))
    return FsckReport(versions_checked=versions, records_checked=records, problems=tuple(problems))


def repair_store(
    store: Any, report: FsckReport, *, republish: Callable[[Any, str, int], int], load: Callable[..., Any] | None = None,
) -> FsckReport:
    """Republish the newest intact version of every block whose version in use is damaged; the
    report again, after the repair, with ``repaired`` saying what was done."""
    done: list[str] = []
    manifest = store.manifest()
    damaged = {(p.block_id, p.version) for p in report.problems if p.what in ("block", "history")}
    for block_id in report.damaged_blocks():
        entry = manifest.blocks[block_id]
        history = list(store.published_history(block_id, entry))
        others = [v.version for v in store.versions(block_id) if v.version != entry.version and v.version not in history]
        candidates = [*reversed(history), *sorted(others, reverse=True)]
        intact = next(
            (v for v in candidates if (block_id, v) not in damaged and _version_problem(store, block_id, v, None, load) is None), None
        )
        if intact is None:
            done.append(f"{block_id}: no intact version to republish; retrain it (blocknerf train --blocks {block_id} --force)")
            continue
        new = republish(store, block_id, intact)
        done.append(f"{block_id}: v{entry.version} is damaged; republished intact v{intact} as v{new}")
    now = store.manifest()
    for block_id, version in sorted(damaged):
        if block_id and version is not None and now.version_of(block_id) != version:
            store.delete_version(block_id, version)
            done.append(f"{block_id}: deleted damaged v{version} (no longer in use)")
    after = check_store(store, load=load)
    return FsckReport(after.versions_checked, after.records_checked, after.problems, tuple(done))

"""Capture records and block plans in the store, as numbered revisions (0: the store's first).

``capture/`` and ``plan/`` hold revision 0; updates add ``records/r<k>/{capture,plan}``, marked
complete (with a content digest) last, so a reader never sees a half-written revision.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import zarr

from blocknerf.capture.frames import Capture
from blocknerf.capture.transforms import capture_from_dict, capture_to_dict
from blocknerf.errors import StoreError
from blocknerf.store.backend import reason, utc_now, write_arrays
from blocknerf.store.deletion import child_groups, is_tombstone
from blocknerf.store.parts import StoreParts
from partitioning import BlockPlan

__all__ = ["RecordsPart", "decode_strings", "encode_strings", "records_digest"]

_RECORDS_RE = re.compile(r"^r(\d+)$")


class RecordsPart(StoreParts):
    """Reading and writing capture records and plans (a part of ``BlockStore``)."""

    @property
    def plan(self) -> BlockPlan:
        """The published block plan."""
        return self.read_plan()

    @property
    def capture(self) -> Capture:
        """The published capture record (frames, poses, intrinsics); images are not checked."""
        return self.read_capture()

    def read_plan(self, records: int | None = None) -> BlockPlan:
        """The block plan of a records revision (default: the published one). Per-block frame
        lists come from arrays (they are large for big captures)."""
        group = self._records_group(records, "plan")
        try:
            doc = dict(group.attrs["plan"])
            ids = decode_strings(np.asarray(group["frame_ids_utf8"][...]), np.asarray(group["frame_ids_offsets"][...]))
            index = np.asarray(group["block_frames"][...])
            shares = np.asarray(group["block_shares"][...])
            offsets = np.asarray(group["block_offsets"][...])
            blocks = []
            for i, block in enumerate(doc["blocks"]):
                lo, hi = int(offsets[i]), int(offsets[i + 1])
                blocks.append({**block, "frames": [ids[int(j)] for j in index[lo:hi]], "shares": shares[lo:hi].tolist()})
            return BlockPlan.from_dict({**doc, "blocks": blocks})
        except (KeyError, TypeError, ValueError, OverflowError, IndexError, AttributeError, UnicodeDecodeError) as exc:
            raise StoreError(self.url, f"malformed block plan in {group.path} ({str(exc)[:160]})") from None

    def read_capture(self, records: int | None = None) -> Capture:
        """The capture record of a records revision (default: the published one)."""
        group = self._records_group(records, "capture")
        record = group.attrs
        where = f"{self.url}/{group.path}"
        if not isinstance(record.get("transforms"), dict) or not isinstance(record.get("root"), str):
            raise StoreError(where, "malformed capture record (needs 'root' and 'transforms')")
        return capture_from_dict(dict(record["transforms"]), root=Path(record["root"]), where=where, require_images=False)

    def write_records(self, capture: Capture, plan: BlockPlan) -> int:
        """Write a capture record and plan as a records revision, unpublished; return its number.

        When the published revision, or a complete unpublished one (left by an update that did not
        finish), holds the same content, that revision's number is returned and nothing is written.
        """
        self._require_writable()
        digest = records_digest(capture, plan)
        published = self.manifest().records
        if self._records_digest_of(published) == digest:
            return published
        group = self._root.require_group("records")
        existing = sorted(int(m.group(1)) for m in map(_RECORDS_RE.match, child_groups(group)) if m)
        for revision in existing:
            attrs = group[f"r{revision}"].attrs
            if attrs.get("complete") and attrs.get("digest") == digest:
                return revision
        revision = max([published, *existing]) + 1
        try:
            target = group.create_group(f"r{revision}")
            self._write_capture_into(target.require_group("capture"), capture)
            self._write_plan_into(target.require_group("plan"), plan)
            target.attrs.put({"complete": True, "digest": digest, "created": utc_now()})
        except (PermissionError, OSError) as exc:
            raise StoreError(self.url, f"cannot write records revision {revision} ({reason(exc)})") from None
        return revision

    def records_revisions(self) -> list[int]:
        """Complete records revisions, oldest first (0, the store's first, always exists)."""
        first = [0] if "plan" in self._root and not is_tombstone(self._root["plan"].attrs) else []
        try:
            group = self._root["records"]
        except KeyError:
            return first
        found = [int(m.group(1)) for m in map(_RECORDS_RE.match, child_groups(group)) if m]
        complete = [r for r in found if group[f"r{r}"].attrs.get("complete")]
        return sorted(first + complete)

    def _records_group(self, records: int | None, name: str) -> zarr.Group:
        revision = self.manifest().records if records is None else records
        if revision != 0 and revision not in self.records_revisions():
            raise StoreError(self.url, f"records revision {revision} is missing or incomplete")
        try:
            return self._root[records_path(revision, name)]
        except KeyError:
            raise StoreError(self.url, f"records revision {revision} has no {name}") from None

    def _records_digest_of(self, revision: int) -> str | None:
        try:
            return self._root["capture" if revision == 0 else f"records/r{revision}"].attrs.get("digest")
        except KeyError:
            return None

    def _write_plan_into(self, group: zarr.Group, plan: BlockPlan) -> None:
        """The plan as JSON attrs for the blocks and arrays for their frame assignments."""
        doc = plan.to_dict()
        ids: dict[str, int] = {}
        index, shares, offsets = [], [], [0]
        for block in doc["blocks"]:
            index.extend(ids.setdefault(f, len(ids)) for f in block.pop("frames"))
            shares.extend(block.pop("shares"))
            offsets.append(len(index))
        utf8, id_offsets = encode_strings(list(ids))
        write_arrays(
            group,
            {
                "frame_ids_utf8": utf8,
                "frame_ids_offsets": id_offsets,
                "block_frames": np.asarray(index, dtype=np.int64),
                "block_shares": np.asarray(shares, dtype=np.float64),
                "block_offsets": np.asarray(offsets, dtype=np.int64),
            },
        )
        group.attrs.put({"plan": doc})

    @staticmethod
    def _write_capture_into(group: zarr.Group, capture: Capture, *, digest: str | None = None) -> None:
        doc = {"root": str(capture.root), "transforms": capture_to_dict(capture, capture.root)}
        group.attrs.put(doc if digest is None else {**doc, "digest": digest})



def encode_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> (UTF-8 bytes as uint8, (N+1,) int64 offsets): portable zarr arrays for text."""
    encoded = [x.encode() for x in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in encoded])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def decode_strings(utf8: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Inverse of ``encode_strings``."""
    raw = utf8.tobytes()
    return [raw[offsets[i] : offsets[i + 1]].decode() for i in range(len(offsets) - 1)]


def records_path(revision: int, name: str) -> str:
    return name if revision == 0 else f"records/r{revision}/{name}"


def records_digest(capture: Capture, plan: BlockPlan) -> str:
    doc = [str(capture.root), capture_to_dict(capture, capture.root), plan.to_dict()]
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


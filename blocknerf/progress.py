"""Progress display for training runs: one bar per block and one for the whole run."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from tqdm import tqdm


class TrainBoard:
    """Turns progress events (see blocknerf.training.cluster) into terminal progress bars.

    The overall bar counts finished blocks and names how many are running or failed; each running
    block has a bar of its steps with loss, PSNR and rays/s. Events may come from any thread.
    """

    def __init__(self, total_blocks: int, *, file: TextIO | None = None, disable: bool = False) -> None:
        self.file = file or sys.stderr
        self.disable = disable
        self._lock = threading.Lock()
        self._bars: dict[str, tqdm] = {}
        self._running: set[str] = set()
        self._failed = 0
        self.events: list[dict[str, Any]] = []
        self.overall = tqdm(total=total_blocks, desc="blocks", unit="block", position=0, file=self.file, disable=disable, dynamic_ncols=True)

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)
            kind, block = event.get("event"), event.get("block", "?")
            if kind == "start":
                self._running.add(block)
                bar = tqdm(
                    total=event["total"], initial=event.get("resumed_from", 0), desc=f"  {block}", unit="step",
                    position=len(self._bars) + 1, file=self.file, disable=self.disable, leave=False, dynamic_ncols=True,
                )
                if event.get("resumed_from"):
                    bar.write(f"{block}: resuming from checkpoint at step {event['resumed_from']}", file=self.file)
                self._bars[block] = bar
            elif kind == "update" and block in self._bars:
                bar = self._bars[block]
                bar.update(max(0, event["step"] - bar.n))
                bar.set_postfix(loss=f"{event['loss']:.4f}", psnr=f"{event['psnr']:.2f}", rays_s=f"{event['rays_per_s']:.0f}", refresh=False)
            elif kind == "finish":
                self._running.discard(block)
                bar = self._bars.pop(block, None)
                if bar is not None:
                    bar.close()
                psnr = event.get("eval_psnr")
                note = f", held-out PSNR {psnr:.2f} dB" if isinstance(psnr, float) else ""
                self.overall.write(f"{block}: done, {event.get('steps', '?')} steps in {event.get('train_seconds', 0):.0f} s{note}", file=self.file)
                self.overall.update(1)
            elif kind == "failed":
                self._running.discard(block)
                self._failed += 1
                bar = self._bars.pop(block, None)
                if bar is not None:
                    bar.close()
                self.overall.write(f"{block}: FAILED: {event.get('error', '')}", file=self.file)
            self.overall.set_postfix(running=len(self._running), failed=self._failed, refresh=True)

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            self.overall.close()

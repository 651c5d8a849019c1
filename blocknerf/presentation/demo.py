"""The whole pipeline on the built-in synthetic city, as ``blocknerf demo`` (and ``make demo``) runs it.

Every stage is the ``blocknerf`` subcommand a user would type, run in this process with the same
arguments, and printed first, so that the demo doubles as a tour of the command line:

    synth -> partition -> train (local dask cluster) -> eval -> render (flythrough)
    -> render --renderer neural / baked (the same frames) -> info (GeoJSON)
    -> synth --change -> update (retrains the blocks the change touches)
    -> synth --object kiosk -> partition -> train -> compose add (beside the drive) -> report.html

What each preset trains is bounded by time (``train.time_budget_s`` per block), so the demo takes
about as long on any machine; its quality is what that time buys on the machine it runs on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blocknerf.config import read_preset
from blocknerf.errors import BlockNerfError, ConfigError
from blocknerf.presentation.report import format_duration, screenshot, write_report
from blocknerf.presentation.showcases import compare_renderers, place_object


@dataclass(frozen=True, slots=True)
class DemoPreset:
    """How big the demo city is and how long each stage may take (``presets/demo-<name>.yaml``)."""

    name: str
    grid: str
    """Driven city blocks, east x north (``synth --grid``)."""
    size: str
    """Captured image size (``synth --size``)."""
    blocks: int
    """Blocks the capture is split into (k-means of the camera positions, overlapping)."""
    train_s: float
    """Training time per block, seconds."""
    update_s: float
    """Training time per block the change touches (warm start from the published version)."""
    eval_views: int
    """Held-out views of the composite evaluation (spread over the city)."""
    flythrough_frames: int
    flythrough_size: str
    renderer_frames: int
    """Frames of the drive rendered by both renderers (baked and neural) to compare them."""
    renderer_size: str
    object_views: int
    """Views of the object's capture (``synth --object kiosk --views``)."""
    object_train_s: float
    """Training time of the object (one block)."""
    pass_by_frames: int
    """Frames of the drive up to the placed object, rendered before and after placing it."""
    pass_by_size: str
    settings: dict[str, Any] = field(default_factory=dict)
    """Further setting overrides (the sections of a ``--config`` file)."""

    @classmethod
    def load(cls, name: str) -> DemoPreset:
        """The shipped preset ``demo-<name>`` (``full`` or ``quick``)."""
        doc = read_preset(f"demo-{name}")
        try:
            return cls(name=name, **doc["demo"], settings=dict(doc.get("settings") or {}))
        except (KeyError, TypeError) as exc:
            raise ConfigError(None, f"preset demo-{name}: malformed ({exc})") from None

    def config(self) -> dict[str, Any]:
        """The demo's settings as a ``--config`` document."""
        partition = {"partition": {"strategy": "clusters", "clusters": self.blocks, "min_frames": 1}}
        return merged(merged(partition, _timed_training(self.train_s)), self.settings)

    def object_config(self) -> dict[str, Any]:
        """The settings of the object's store as a ``--config`` document: the shipped ``object``
        preset (one block around what the cameras look at), with the demo's model and bake."""
        return merged(merged(read_preset("object"), _timed_training(self.object_train_s)), self.settings)


def _timed_training(seconds: float) -> dict[str, Any]:
    # Bounded by time, not steps; a short warm-up, as a run is a few hundred steps at most.
    return {"train": {"steps": 100_000, "time_budget_s": seconds, "warmup_steps": 10, "eval_views": 2, "checkpoint_every_s": 30.0}}


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, mappings merged key by key at every depth (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


PRESET_NAMES = ("full", "quick")
STAGES = 20
"""Stages of a demo, writing the report included."""
CHANGED_VIEWS = 4
"""Held-out views of the re-capture rendered before and after the update."""


@dataclass(slots=True)
class Stage:
    """One stage of the demo: its title, the command it ran and how long it took."""

    title: str
    argv: list[str]
    seconds: float = 0.0
    exit_code: int | None = None
    output: str | None = None
    """What the command printed, when the demo keeps it for the report."""

    @property
    def command(self) -> str:
        return "blocknerf " + " ".join(shlex.quote(a) for a in self.argv)


Command = Callable[[list[str]], int]
"""Runs ``blocknerf ARGV`` (the words after ``blocknerf``) and returns its exit code."""


class DemoRun:
    """Runs the stages of one demo into ``out``, printing each before it starts."""

    def __init__(
        self, out: Path, preset: DemoPreset, *, command: Command, workers: int | None, total: int, echo: Callable[[str], None]
    ) -> None:
        self.command = command
        self.out = out
        self.preset = preset
        self.workers = workers
        self.total = total
        self.echo = echo
        self.stages: list[Stage] = []

    def run(self, title: str, argv: Sequence[str], *, keep_output: bool = False) -> Stage:
        """Run ``blocknerf ARGV`` as a stage; a failing stage stops the demo with its exit code.
        ``keep_output``: also keep what it prints (``Stage.output``; it is still shown)."""
        import contextlib
        import io

        words = [str(a) for a in argv]
        printed = io.StringIO()

        def command() -> int:
            with contextlib.redirect_stdout(printed) if keep_output else contextlib.nullcontext():
                return self.command(words)

        code = self.step(title, command, argv=words)
        stage = self.stages[-1]
        stage.exit_code = code
        if keep_output:
            stage.output = printed.getvalue()
            self.echo(stage.output.rstrip("\n"))
        if code != 0:
            raise DemoStageFailed(stage)
        return stage

    def step(self, title: str, work: Callable[[], Any], *, argv: Sequence[str] = ()) -> Any:
        """Run ``work`` as a stage (``argv``: the subcommand it runs, if any), timed; its result."""
        stage = Stage(title, list(argv))
        self.stages.append(stage)
        self.echo(f"\n[{len(self.stages)}/{self.total}] {title}" + (f"\n$ {stage.command}" if stage.argv else ""))
        began = time.perf_counter()
        result = work()
        stage.seconds = time.perf_counter() - began
        return result

    def cluster_args(self) -> list[str]:
        return [] if self.workers is None else ["--workers", str(self.workers)]


class DemoStageFailed(BlockNerfError):
    """A stage of the demo exited non-zero (its own message was printed already)."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(f"stage '{stage.title}' failed (exit {stage.exit_code}): {stage.command}")
        self.stage = stage


def run_demo(
    out: str | os.PathLike[str],
    *,
    command: Command,
    preset: DemoPreset | None = None,
    workers: int | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` (created; an earlier demo there is replaced) and write
    ``report.html``; returns the report's facts (also written as ``demo.json``).

    ``command`` runs one ``blocknerf`` subcommand (the CLI's ``main``, given by ``blocknerf demo``);
    ``preset`` defaults to the full one."""
    preset = preset or DemoPreset.load("full")
    import yaml

    out = Path(out)
    _prepare(out)
    config = out / "demo.yaml"
    config.write_text(f"# Settings of `blocknerf demo` ({preset.name}); pass to any command with --config.\n" + yaml.safe_dump(preset.config(), sort_keys=False))
    city, changed, store = out / "capture", out / "capture_changed", out / "city.zarr"
    demo = DemoRun(out, preset, command=command, workers=workers, total=STAGES, echo=echo)
    began = time.perf_counter()

    demo.run("synthesise the city", ["synth", city, "--grid", preset.grid, "--size", preset.size, "--config", config])
    demo.run(
        f"split the capture into {preset.blocks} overlapping blocks",
        ["partition", city, "--store", store, "--config", config, "--map", out / "map.png"],
    )
    demo.run(f"train every block on a local dask cluster ({preset.train_s:.0f} s each)", ["train", store, *demo.cluster_args()])
    demo.run(
        "evaluate held-out views: each block, and the streamed composite",
        ["eval", store, "--views", preset.eval_views, "--out", out / "eval.json", "--renders", out / "heldout"],
    )
    demo.run(
        "render a flythrough along the drive, streaming blocks by proximity",
        ["render", store, "--auto", "--frames", preset.flythrough_frames, "--size", preset.flythrough_size,
         "--out", out / "flythrough.mp4", "--frames-dir", out / "flythrough_frames", "--stats", out / "flythrough_stats.json", "--write-path", out / "camera_path.json"],
    )
    renderers = compare_renderers(demo, store)
    demo.run("export the block footprints as GeoJSON", ["info", store, "--geojson", out / "blocks.geojson"])
    demo.run(
        "the city changes: a new building and road works, re-captured around them",
        ["synth", changed, "--grid", preset.grid, "--size", preset.size, "--config", config, "--change"],
    )
    before = _changed_result(demo.run("render the changed area before the update", _changed_views(store, changed, out / "update" / "before")))
    demo.run(
        f"update: retrain only the blocks the change touches ({preset.update_s:.0f} s each)",
        ["update", store, changed, "--time-budget", preset.update_s, *demo.cluster_args()],
    )
    after = _changed_result(demo.run("render the changed area after the update", _changed_views(store, changed, out / "update" / "after")))
    composition = place_object(demo, store, changed)

    facts = {**_facts(demo, store, before, after, time.perf_counter() - began), "renderers": renderers, "composition": composition}
    (out / "demo.json").write_text(json.dumps(facts, indent=2))
    report = demo.step("write the report", lambda: write_report(out, facts))
    shot = screenshot(report, out / "report.png")
    echo(f"\ndemo finished in {format_duration(time.perf_counter() - began)}: open {report}")
    echo(f"a picture of the report: {shot}" if shot else "(install chromium to also get report.png, a picture of the report)")
    return facts


def _prepare(out: Path) -> None:
    """Make ``out`` ready: new, empty, or an earlier demo (whose outputs are replaced)."""
    import shutil

    if out.exists() and not out.is_dir():
        raise ConfigError(None, f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "demo.yaml").exists():
        raise ConfigError(None, f"{out}: not empty and not an earlier demo; choose a new directory")
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _changed_views(store: Path, changed: Path, save_dir: Path) -> list[Any]:
    """The ``eval`` command that renders the composite on the new capture's held-out views."""
    return ["eval", store, "--capture", changed, "--views", CHANGED_VIEWS, "--out", save_dir / "eval.json", "--renders", save_dir]


def _changed_result(stage: Stage) -> dict[str, Any]:
    """The composite's result on the changed area, from the ``eval`` stage's JSON, with the
    versions published now (call it right after the stage)."""
    from blocknerf.store import BlockStore

    argv = stage.argv
    result = dict(json.loads(Path(argv[argv.index("--out") + 1]).read_text())["composite"])
    result["published"] = {block_id: entry.version for block_id, entry in BlockStore.open(argv[1]).manifest().blocks.items()}
    return result


def _facts(demo: DemoRun, store_url: Path, before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Everything the report shows, as plain JSON."""
    from blocknerf.store import BlockStore

    out = demo.out
    store = BlockStore.open(store_url)
    plan = store.plan
    blocks = []
    for spec in plan.blocks:
        versions = [_plain(dataclasses.asdict(v)) for v in store.versions(spec.id)]
        blocks.append(
            {
                "id": spec.id,
                "center": [round(float(c), 2) for c in spec.center],
                "radius_m": round(float(spec.radius_m), 2),
                "frames": len(spec.frames),
                "published": store.manifest().version_of(spec.id),
                "versions": versions,
            }
        )
    return {
        "preset": demo.preset.name,
        "seconds": round(seconds, 1),
        "stages": [{"title": s.title, "command": s.command if s.argv else None, "seconds": round(s.seconds, 2)} for s in demo.stages],
        "eval": json.loads((out / "eval.json").read_text()),
        "flythrough": json.loads((out / "flythrough_stats.json").read_text()) if (out / "flythrough_stats.json").exists() else None,
        "blocks": blocks,
        "update": {"before": before, "after": after},
        "files": sorted(p.name for p in out.iterdir()),
    }


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and anything JSON cannot hold as its string."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

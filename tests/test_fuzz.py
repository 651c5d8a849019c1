"""Property-based fuzzing of everything a user or a stranger's store can hand blocknerf: every case
ends in a correct result or a one-line error with exit code 2, never a traceback, a hang or a write
outside the output. About 2,300 cases per run (counts in ``EXAMPLES``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from blocknerf.cli.main import main
from blocknerf.errors import InputError, StoreError

EXAMPLES = {"transforms": 600, "camera_path": 800, "yaml": 700, "manifest": 100, "arrays": 100}
"""Cases per test; 2,300 in all."""

def fuzz(examples: int) -> settings:
    """Cheap cases, no deadline, no example database (nothing written into the checkout).

    The same cases every run (derandomised), so a red CI is a regression, not a new draw;
    ``BLOCKNERF_FUZZ_RANDOM=1`` draws fresh cases, to hunt for new failures (pin each one found as
    an ``@example``)."""
    fresh = os.environ.get("BLOCKNERF_FUZZ_RANDOM") == "1"
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=not fresh)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["../x.png", "/etc/hostname", "a.png", "a", "OPENCV", "nan"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=20)
matrices = st.one_of(
    st.just([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4), min_size=3, max_size=5),
    json_values,
)
frames = st.fixed_dictionaries(
    {"file_path": st.one_of(st.just("a.png"), st.just("a"), st.just("../a.png"), st.just("/etc/hostname"), scalars),
     "transform_matrix": matrices},
    optional={"fl_x": scalars, "w": scalars, "h": scalars, "timestamp": scalars, "exposure": scalars, "gps": json_values,
              "depth_file_path": scalars, "appearance_id": scalars, "k1": scalars},
)
transforms_docs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"frames": st.one_of(st.lists(frames, max_size=3), json_values)},
        optional={"fl_x": st.one_of(st.just(30.0), scalars), "fl_y": scalars, "cx": scalars, "cy": scalars,
                  "w": st.one_of(st.just(16), scalars), "h": st.one_of(st.just(12), scalars), "camera_model": scalars,
                  "camera_angle_x": scalars, "geo_origin": json_values, "test_filenames": json_values, "train_filenames": json_values},
    ),
)


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def assert_one_line_or_ok(rc: int, err: str, ok: tuple[int, ...] = (0,)) -> None:
    assert rc in (*ok, 2), err
    assert "internal error" not in err and "Traceback" not in err, err
    if rc == 2:
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1, err


def test_transforms_json(tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from PIL import Image

    from blocknerf.capture.transforms import read_capture

    warnings.simplefilter("ignore")  # missing-image warnings are expected here

    root = tmp_path_factory.mktemp("fuzz_transforms")
    capture = root / "capture"
    capture.mkdir()
    Image.new("RGB", (16, 12)).save(capture / "a.png")

    @fuzz(EXAMPLES["transforms"])
    @given(doc=transforms_docs, raw=st.booleans())
    @example(doc={"frames": [], "fl_x": 30.0, "h": 12, "w": 16, "camera_model": "\n"}, raw=False)  # found by a fresh draw
    def case(doc: object, raw: bool) -> None:
        text = json.dumps(doc, allow_nan=True) if not raw else json.dumps(doc)[:-1]
        (capture / "transforms.json").write_text(text)
        before = listing(root)
        try:  # what `blocknerf inspect` does first; an InputError is its one line with exit 2
            read_capture(capture)
        except InputError as exc:
            assert "\n" not in str(exc)
        assert listing(root) == before

    case()


def test_camera_path_json() -> None:
    from streaming.camera_path import camera_path_from_dict

    poses = st.lists(st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=16, max_size=16), json_values), max_size=3)
    docs = st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"camera_path": st.one_of(st.lists(st.fixed_dictionaries({"camera_to_world": st.one_of(poses.map(lambda p: p[0] if p else []), json_values)},
                                                                     optional={"fov": scalars, "aspect": scalars}), max_size=3), json_values)},
            optional={"render_height": scalars, "render_width": scalars, "fps": scalars, "seconds": scalars, "camera_type": scalars},
        ),
    )

    @fuzz(EXAMPLES["camera_path"])
    @given(doc=docs)
    def case(doc: object) -> None:
        try:
            path = camera_path_from_dict(doc, where="camera_path.json")
        except InputError as exc:
            assert "\n" not in str(exc)
            return
        assert np.isfinite(path.positions).all()

    case()


def test_yaml_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    import yaml

    from blocknerf.cli.settings import resolve

    file = tmp_path_factory.mktemp("fuzz_yaml") / "settings.yaml"
    sections = st.sampled_from(["partition", "model", "train", "stream", "update", "cluster", "synth", "nope"])
    keys = st.sampled_from(["steps", "spacing_m", "overlap", "strategy", "hashgrid", "log2_table_size", "memory_budget_mb",
                            "time_budget_s", "workers", "resolution", "occupancy", "x"])
    docs = st.one_of(json_values, st.dictionaries(sections, st.one_of(st.dictionaries(keys, json_values, max_size=3), json_values), max_size=3))

    @fuzz(EXAMPLES["yaml"])
    @given(doc=docs, garbage=st.booleans())
    def case(doc: object, garbage: bool) -> None:
        file.write_text("{: [" if garbage else yaml.safe_dump(doc))
        try:
            resolve(argparse.Namespace(config=str(file)))
        except InputError as exc:
            assert "\n" not in str(exc)

    case()


@pytest.fixture(scope="module")
def fuzz_store(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("fuzz_store") / "city.zarr"
    shutil.copytree(tiny_store, copy)
    return copy


def test_store_manifest(fuzz_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root_json = fuzz_store / "zarr.json"
    original = root_json.read_text()
    good = json.loads(original)["attributes"]["manifest"]
    entry = next(iter(good["blocks"].values()))
    blocks = st.dictionaries(
        st.one_of(st.sampled_from(list(good["blocks"])), st.just("../x"), st.text(max_size=6)),
        st.one_of(st.fixed_dictionaries({"version": st.one_of(st.integers(-2, 5), scalars), "published_at": scalars,
                                         "checksum": st.one_of(st.just(entry["checksum"]), scalars)},
                                        optional={"history": json_values}), json_values),
        max_size=3,
    )
    manifests = st.one_of(json_values, st.fixed_dictionaries({"blocks": st.one_of(blocks, json_values)},
                                                            optional={"serial": scalars, "records": st.one_of(st.integers(-1, 3), scalars),
                                                                      "schema_version": scalars}))

    @fuzz(EXAMPLES["manifest"])
    @given(manifest=manifests, command=st.sampled_from(["info", "fsck"]))
    @example(manifest={"blocks": {}, "serial": math.inf}, command="info")  # found by a fresh draw
    @example(manifest={"blocks": {}, "serial": math.inf}, command="fsck")
    def case(manifest: object, command: str) -> None:
        doc = json.loads(original)
        doc["attributes"]["manifest"] = manifest
        root_json.write_text(json.dumps(doc))
        try:
            rc = main([command, str(fuzz_store), "--json"])
            assert_one_line_or_ok(rc, capsys.readouterr().err, ok=(0, 1) if command == "fsck" else (0,))
        finally:
            root_json.write_text(original)

    case()


def test_stored_arrays_with_wrong_shapes_dtypes_or_nans(fuzz_store: Path) -> None:
    """Arrays a stranger wrote (with a checksum that matches them): loading refuses, never crashes."""
    from blocknerf.model.block import load_block
    from blocknerf.store import BlockStore, checksum_arrays

    store = BlockStore.open(fuzz_store)
    block_id = store.plan.ids[0]
    version = store.manifest().version_of(block_id)
    group = zarr.open_group(str(fuzz_store / "blocks" / block_id / f"v{version}"), mode="r+")
    names = sorted(name for name, _ in group.arrays())
    originals = {name: np.asarray(group[name][...]) for name in names}
    attrs = dict(group.attrs)

    @fuzz(EXAMPLES["arrays"])
    @given(name=st.sampled_from(names), shape=st.lists(st.integers(0, 5), min_size=0, max_size=3),
           dtype=st.sampled_from(["float32", "float64", "int8", "uint8", "bool", "int64"]), fill=st.sampled_from([0.0, 1.0, np.nan, np.inf]))
    def case(name: str, shape: list[int], dtype: str, fill: float) -> None:
        bad = np.full(shape, fill if np.dtype(dtype).kind == "f" else 1, dtype=dtype)
        del group[name]
        group.create_array(name, data=bad)
        group.attrs.put({**attrs, "checksum": checksum_arrays({**originals, name: bad})})
        try:
            load_block(BlockStore.open(fuzz_store), block_id)
        except StoreError as exc:
            assert f"block {block_id} version {version}" in str(exc) and "\n" not in str(exc)
        finally:
            del group[name]
            group.create_array(name, data=originals[name])
            group.attrs.put(attrs)

    case()

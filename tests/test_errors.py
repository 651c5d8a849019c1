"""User-facing errors keep their one-line message across processes (dask ships them by pickle)."""

from __future__ import annotations

import pickle

import pytest

from blocknerf.errors import ConfigError, InputError, StoreError


@pytest.mark.parametrize("cls", [InputError, ConfigError, StoreError], ids=lambda c: c.__name__)
@pytest.mark.parametrize("path", ["city/transforms.json", None], ids=["with-path", "no-path"])
def test_errors_survive_pickling_with_their_message(cls, path):
    error = cls(path, "frame 3: transform_matrix is not rigid")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls and str(again) == str(error)
    assert (again.path, again.problem) == (path, "frame 3: transform_matrix is not rigid")


@pytest.mark.parametrize("cls", [InputError, ConfigError, StoreError], ids=lambda c: c.__name__)
def test_a_value_with_newlines_from_a_users_file_stays_on_one_line(cls):
    error = cls("city/trans\nforms.json", "camera_model '\n\r\t' is not supported")
    assert str(error) == "city/trans\\nforms.json: camera_model '\\n\\r\\t' is not supported"
    assert pickle.loads(pickle.dumps(error)).problem == "camera_model '\n\r\t' is not supported"

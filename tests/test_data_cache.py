"""The data cache (forgetlab.data.cache): a task sequence read back from disk is the one the builder
makes, bit for bit; a warm cache spares a new process scikit-learn; a bad or unwritable cache never
fails a build; the key changes with every setting and with the data package's source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import forgetlab.data as data
from forgetlab.data import TASK_SEQUENCES, build_task_sequence, cache

CASES = [
    {"name": "split_digits"},
    {"name": "rotated_digits", "n_tasks": 3, "max_train_per_task": 50},
    {"name": "split_mnist", "input": "sequence", "test_size": 0.2, "val_size": 0.2},
    {"name": "delayed_recall", "input": "sequence", "scenario": "domain"},
]


def config(values: dict):
    return TASK_SEQUENCES[values["name"]].Config(**values)


def same(a, b) -> None:
    assert (a.name, a.n_classes, a.single_pass, a.n_tasks) == (b.name, b.n_classes, b.single_pass, b.n_tasks)
    for task_a, task_b in zip(a.tasks, b.tasks):
        assert task_a.name == task_b.name
        for field in cache.ARRAYS:
            x, y = getattr(task_a, field), getattr(task_b, field)
            assert x.dtype == y.dtype and x.shape == y.shape, field
            np.testing.assert_array_equal(x, y, err_msg=field)


@pytest.fixture
def cache_in(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("values", CASES, ids=[c["name"] for c in CASES])
def test_read_back_equals_the_build(values, cache_in, monkeypatch):
    built = build_task_sequence(config(values))
    assert len(list(cache_in.glob(f"{values['name']}-*.npz"))) == 1

    def no_build(*args):
        raise AssertionError("built again although the cache holds it")

    builder = data._build
    monkeypatch.setattr(data, "_build", no_build)
    same(build_task_sequence(config(values)), built)
    monkeypatch.setattr(data, "_build", builder)  # the reference: built with the cache off
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    same(build_task_sequence(config(values)), built)


def test_every_setting_is_part_of_the_key(cache_in):
    build_task_sequence(config({"name": "split_digits"}))
    build_task_sequence(config({"name": "split_digits", "data_seed": 1}))
    build_task_sequence(config({"name": "split_digits", "input": "sequence"}))
    build_task_sequence(config({"name": "split_digits", "scenario": "domain"}))  # not read by the build
    build_task_sequence(config({"name": "split_digits", "joint": True}))  # nor this
    assert len(list(cache_in.glob("split_digits-*.npz"))) == 3


def test_a_warm_cache_spares_a_new_process_scikit_learn(cache_in):
    build_task_sequence(config({"name": "split_digits", "val_size": 0.2}))
    code = ("import sys; from forgetlab.data import TASK_SEQUENCES, build_task_sequence; "
            "s = build_task_sequence(TASK_SEQUENCES['split_digits'].Config(val_size=0.2)); "
            "print(s.n_tasks, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, cache.CACHE_ENV: str(cache_in)}).stdout
    assert out.split() == ["5", "False"]


def test_a_damaged_file_is_built_again(cache_in):
    built = build_task_sequence(config({"name": "split_digits"}))
    (path,) = cache_in.glob("split_digits-*.npz")
    path.write_bytes(path.read_bytes()[:1000])  # as a writer killed on a file system without atomic renames
    same(build_task_sequence(config({"name": "split_digits"})), built)
    same(cache.read(path), built)  # and written whole again


def test_an_unwritable_cache_leaves_the_build_uncached(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))  # cannot be created: its parent is a file
    sequence = build_task_sequence(config({"name": "split_digits"}))
    assert sequence.n_tasks == 5 and not list(tmp_path.glob("**/*.npz"))


def test_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    build_task_sequence(config({"name": "split_digits"}))
    assert cache.cache_dir() is None and not list(tmp_path.glob("**/*.npz"))


def test_the_default_directory_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "forgetlab" / "data"


def test_no_home_directory_means_no_cache(monkeypatch):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "expanduser", lambda self: self)  # what expanduser does when it finds no home
    assert cache.cache_dir() is None


def test_an_edit_of_the_data_package_changes_the_key(tmp_path, monkeypatch):
    copy = tmp_path / "data"
    shutil.copytree(cache.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "PACKAGE", copy)
    cache.fingerprint.cache_clear()
    try:
        before = cache.fingerprint()
        with (copy / "builders.py").open("a") as file:
            file.write("\n# a changed split\n")
        cache.fingerprint.cache_clear()
        assert cache.fingerprint() != before
    finally:
        cache.fingerprint.cache_clear()


def test_only_forgetlabs_own_builders_are_kept():
    def extension_builder(**kwargs):  # an extension's builder may read files the key does not know
        raise NotImplementedError

    assert cache.is_cacheable(TASK_SEQUENCES["split_mnist"].build)
    assert not cache.is_cacheable(extension_builder)

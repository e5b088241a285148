"""Packaged data tables are read with libyaml's C parser (``load_table``): the same documents as
PyYAML's pure-Python ``safe_load``, for every YAML file tunesmith ships."""

from pathlib import Path

import yaml

import tunesmith
from tunesmith.config.yaml_load import load_table


def test_load_table_equals_safe_load_for_every_shipped_yaml():
    files = sorted(Path(tunesmith.__file__).parent.rglob("*.yaml"))
    assert len(files) > 20
    for path in files:
        text = path.read_text("utf-8")
        assert load_table(text) == yaml.safe_load(text), path


def test_load_table_is_safe():
    try:
        load_table("!!python/object/apply:os.system ['true']")
    except yaml.YAMLError:
        return
    raise AssertionError("load_table constructed a Python object")

"""Configuration: FineWeb defaults, examples/fineweb.toml, validation errors."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from webmill.config import CLASS_SECTIONS, DEFAULTS, class_for, config_hash, load_config
from webmill.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _section(cfg: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        cfg = cfg[key]
    return cfg


def test_fineweb_toml_lists_the_defaults():
    cfg = load_config(ROOT / "examples" / "fineweb.toml")
    for path in CLASS_SECTIONS:
        cls = class_for(path)
        params = inspect.signature(cls).parameters
        factories = ({f.name: f.default_factory for f in dataclasses.fields(cls)
                      if f.default_factory is not dataclasses.MISSING} if dataclasses.is_dataclass(cls) else {})
        table = _section(cfg, path)
        if table == {"enabled": False}:  # a step FineWeb does not run (rephrase)
            continue
        assert len(table) > 1, path  # every rule lists its keys
        for key, value in table.items():
            if key == "enabled":
                assert value is True
                continue
            default = factories[key]() if key in factories else params[key].default
            norm = (lambda v: [list(x) if isinstance(x, tuple) else x for x in v]
                    if isinstance(v, (list, tuple)) else v)
            assert norm(value) == norm(default), f"{path} {key}: toml {value!r} != default {default!r}"
    for section in ("extract", "quality", "tokenize", "ray", "output"):
        assert cfg[section] == DEFAULTS[section], section


@pytest.mark.parametrize("overrides,needle", [
    ({"nope": {}}, "unknown config key 'nope'"),
    ({"extract": {"timeout_s": "1"}}, "extract.timeout_s must be float"),
    ({"filters": {"c4": {"enabled": "yes"}}}, "[filters.c4] enabled must be true or false"),
    ({"filters": {"gopher_quality": {"min_doc_words": 1.5}}}, "[filters.gopher_quality] min_doc_words must be int"),
    ({"dedup": {"bands": "x"}}, "[dedup] bands must be int"),
    ({"pii": {"emails": "replace"}}, "unknown config key [pii] 'emails'"),
])
def test_validation_names_the_key(overrides, needle):
    with pytest.raises(UserError) as e:
        load_config(overrides=overrides)
    assert needle in str(e.value)


def test_false_turns_a_threshold_off_and_hash_changes():
    a = load_config()
    b = load_config(overrides={"filters": {"fineweb": {"short_line_thr": False}}})
    assert config_hash(a) != config_hash(b)
    assert config_hash(a) == config_hash(load_config())


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_scheduling_and_storage_settings_do_not_change_the_hash():
    """[ray] and [storage] change how and where a run happens, not its outputs: the hash in
    markers and shard manifests must not move with them (a rerun with more workers resumes)."""
    a = load_config()
    b = load_config(overrides={"ray": {"num_workers": 7, "num_cpus": 0.5, "start_jitter_s": 3.0},
                               "storage": {"max_attempts": 2, "s3": {"endpoint_url": "http://127.0.0.1:1"}}})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_config(overrides={"tokenize": {"seed": 1}}))

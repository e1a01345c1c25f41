"""The stage registry (webmill/curate/stages.py) is the one list of stages: every stage's class
exists, its reasons map back to it, and the config, the chain builder and the per-document driver
follow the registry's names and order."""

from __future__ import annotations

import inspect

import pytest

from webmill.config import DEFAULTS, load_config
from webmill.curate import documents
from webmill.curate.stages import (CLASS_SECTIONS, DOCUMENT_STAGES, GLOBAL_STEPS, RULE_STAGES, STAGES,
                                   build_rules, class_for, reason_stage)
from webmill.errors import UserError


def test_every_stage_class_exists_and_its_reasons_map_back():
    for stage in DOCUMENT_STAGES:
        if stage.cls:
            cls = stage.load_class()
            assert inspect.isclass(cls), stage.name
            assert callable(getattr(cls, "filter", None)), f"{stage.cls} has no filter()"
        for reason in stage.all_reasons():
            assert reason_stage(reason) == stage.name, (reason, stage.name)
            if stage.prefix:
                assert reason.startswith(stage.prefix), (reason, stage.prefix)
    rules = [s for s in DOCUMENT_STAGES if s.kind == "rule"]
    assert all(s.load_class().REASONS for s in rules), "every heuristic rule declares REASONS"
    assert reason_stage("gopher_rep_top_5_gram") == "gopher_repetition"  # longest prefix wins
    assert reason_stage("gopher_below_min_words") == "gopher_quality"
    assert reason_stage("no_such_reason") == "other"


def test_rule_class_names_are_the_registry_names():
    """The driver counts a rule under ``rule.name``; that must be the stage's registry name."""
    for stage in RULE_STAGES:
        assert stage.load_class().name == stage.name
    assert [r.name for r in build_rules(load_config()["filters"])] == [s.name for s in RULE_STAGES]
    assert (documents.RECORD, documents.URL, documents.EXTRACT, documents.LANGUAGE, documents.DECONTAM) == tuple(
        s.name for s in DOCUMENT_STAGES if s.kind != "rule")


def test_config_sections_follow_the_registry():
    for stage in DOCUMENT_STAGES:
        if stage.section is None:
            continue
        table = DEFAULTS
        for key in stage.section:
            assert key in table, f"config has no [{'.'.join(stage.section)}] for stage {stage.name}"
            table = table[key]
        assert table.get("enabled", True) is (stage.kind != "decontam")  # decontamination is opt-in
        if stage.cls:
            assert CLASS_SECTIONS[stage.section] == stage.cls
            assert class_for(stage.section) is stage.load_class()
    assert list(DEFAULTS["filters"]) == [s.name for s in RULE_STAGES]
    for path in CLASS_SECTIONS:
        assert inspect.isclass(class_for(path)), path
    for step in GLOBAL_STEPS:
        assert step.section in DEFAULTS, step.name
    assert set(STAGES) == {s.name for s in DOCUMENT_STAGES}


def test_build_rules_disables_and_validates():
    rules = build_rules({"c4": {"enabled": False}, "gopher_quality": {"min_doc_words": 10}})
    assert [r.name for r in rules] == ["gopher_repetition", "gopher_quality", "fineweb"]
    with pytest.raises(UserError, match=r"\[filters.c4\].*known keys"):
        build_rules({"c4": {"no_such_key": 1}})
    with pytest.raises(UserError, match=r"\[filters.fineweb\] enabled must be true or false"):
        build_rules({"fineweb": {"enabled": "yes"}})

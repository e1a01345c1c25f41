"""FineWeb rules: both sides of every threshold, Chinese punctuation, the chain builder and
examples/fineweb.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from webmill.errors import UserError
from webmill.filters.base import Document
from webmill.filters.c4 import C4Filter
from webmill.curate.stages import RULE_STAGES, build_rules
from webmill.filters.fineweb import FineWebQualityFilter, apply_filters
from webmill.filters.gopher import GopherQualityFilter, GopherRepetitionFilter

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fineweb.toml"
OFF = dict(line_punct_thr=None, short_line_thr=None, char_duplicates_ratio=None,
           new_line_ratio=None)


def doc(text: str, language: str = "en") -> Document:
    return Document(text=text, id="f1", metadata={"language": language})


def fw(**kw) -> FineWebQualityFilter:
    return FineWebQualityFilter(**{**OFF, **kw})


def lines_text(n_lines: int, n_special: int, special, normal) -> str:
    return "\n".join(special(i) if i < n_special else normal(i) for i in range(n_lines))


def test_line_punct_ratio_both_sides():
    f = fw(line_punct_thr=0.12)
    ends = lambda i: f"line number {i} ends with a full stop."  # noqa: E731
    bare = lambda i: f"line number {i} has no end mark"  # noqa: E731
    assert f.filter(doc(lines_text(100, 13, ends, bare))) == (True, None)  # 0.13
    assert f.filter(doc(lines_text(100, 12, ends, bare))) == (
        False, "fineweb_line_punct_ratio")  # 0.12 is dropped (<=)
    zero = lines_text(10, 0, ends, bare)
    assert f.filter(doc(zero)) == (False, "fineweb_line_punct_ratio")
    assert fw(line_punct_thr=0.12, line_punct_exclude_zero=True).filter(doc(zero)) == (True, None)


def test_short_line_ratio_both_sides():
    f = fw(short_line_thr=0.67)
    short = lambda i: f"short {i:03d}".ljust(30, ".")  # noqa: E731  # exactly 30 chars: short
    long = lambda i: f"long line {i:03d}".ljust(31, ".")  # noqa: E731  # 31 chars: not short
    assert f.filter(doc(lines_text(100, 66, short, long))) == (True, None)
    assert f.filter(doc(lines_text(100, 67, short, long))) == (
        False, "fineweb_short_line_ratio")  # 0.67 is dropped (>=)


def test_char_duplicates_ratio_both_sides():
    f = fw(char_duplicates_ratio=0.01)
    dup = "x" * 10
    # characters other than newlines: 10 + 10 + filler; repeated: 10 -> 10 / 1001 < 0.01
    filler_kept = "y" * (1001 - 20)
    filler_dropped = "y" * (1000 - 20)  # 10 / 1000 = 0.01 is dropped (>=)
    assert f.filter(doc(f"{dup}\n{dup}\n{filler_kept}")) == (True, None)
    assert f.filter(doc(f"{dup}\n{dup}\n{filler_dropped}")) == (False, "fineweb_char_dup_ratio")
    # blank lines are not duplicates
    assert f.filter(doc(f"{dup}\n\n\n\n{filler_dropped}")) == (True, None)


def test_newline_ratio_both_sides():
    f = fw(new_line_ratio=0.3)
    kept = "\n".join(["one two three four five six seven eight nine ten"] * 4)  # 3 / 40
    assert f.filter(doc(kept)) == (True, None)
    # 10 words, 3 newlines: 0.3 kept; 4 newlines: 0.4 dropped
    assert f.filter(doc("a b c\nd e f\ng h\ni j")) == (True, None)
    assert f.filter(doc("a b c\nd e f\ng h\ni\nj")) == (False, "fineweb_newline_ratio")


def test_chinese_full_stops_count_as_line_punctuation():
    text = "\n".join(["今年夏天北京市政府宣布了一项新的城市绿化计划，全市将在未来五年内新建三百个社区公园。"] * 1
                     + [f"第{i}段：市民们普遍对此表示欢迎，认为这将改善城市的空气质量和居住环境与生活。" for i in range(5)])
    assert FineWebQualityFilter().filter(doc(text, "zh")) == (True, None)
    ascii_only = FineWebQualityFilter(stop_chars=[".", "'", '"', "!", "?"])
    assert ascii_only.filter(doc(text, "zh")) == (False, "fineweb_line_punct_ratio")


def test_empty_text_is_dropped_not_crashing():
    assert FineWebQualityFilter().filter(doc("")) == (False, "fineweb_line_punct_ratio")
    assert fw(new_line_ratio=0.3).filter(doc("\n\n")) == (False, "fineweb_newline_ratio")


@pytest.mark.parametrize("kwargs,key", [
    ({"line_punct_thr": 2}, "line_punct_thr"),
    ({"short_line_length": None}, "short_line_length"),
    ({"stop_chars": "."}, "stop_chars"),
    ({"line_punct_exclude_zero": 1}, "line_punct_exclude_zero"),
])
def test_bad_config_raises_user_error(kwargs, key):
    with pytest.raises(UserError, match=rf"\[filters\.fineweb\] {key}"):
        FineWebQualityFilter(**kwargs)


def test_reasons_documented():
    for reason in FineWebQualityFilter.REASONS:
        assert reason in FineWebQualityFilter.__doc__


# --- chain and config ---------------------------------------------------------------------


def test_chain_order_and_tables():
    chain = build_rules()
    assert [f.name for f in chain] == ["gopher_repetition", "gopher_quality", "c4", "fineweb"]
    chain = build_rules({"c4": {"enabled": False},
                                 "fineweb": {"short_line_thr": 0.5},
                                 "language": {"threshold": 0.65}})  # other tables ignored
    assert [f.name for f in chain] == ["gopher_repetition", "gopher_quality", "fineweb"]
    assert chain[-1].short_line_thr == 0.5
    with pytest.raises(UserError, match=r"\[filters\.c4\].*unexpected keyword.*known keys"):
        build_rules({"c4": {"min_sentences": 3}})
    with pytest.raises(UserError, match=r"\[filters\.fineweb\] must be a table"):
        build_rules({"fineweb": 3})


def test_apply_filters_stops_at_first_drop_and_edits_text():
    text = "\n".join([
        "Menu",
        "The history of the town goes back to the twelfth century, when a small abbey was "
        "founded on the river bank by monks from the north.",
        "Farmers and traders settled around it, and by 1400 the market was one of the busiest "
        "in the region, with fairs held twice a year.",
        "Today the old streets are a quiet place to walk, with a museum that tells the story "
        "of the abbey and of the people who lived and worked with the monks.",
        "The abbey church is open to visitors every day. Guided tours start at ten o'clock.",
    ])
    d = doc(text)
    assert apply_filters(build_rules(), d) == (True, None)
    assert not d.text.startswith("Menu") and d.metadata["c4_lines_removed"] == 1
    d = doc("too short")
    assert apply_filters(build_rules(), d) == (False, "gopher_short_doc")


def test_example_toml_lists_every_key_with_the_defaults():
    import inspect

    tables = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["filters"]
    assert set(tables) == {stage.name for stage in RULE_STAGES}
    for name, cls in ((stage.name, stage.load_class()) for stage in RULE_STAGES):
        table = dict(tables[name])
        assert table.pop("enabled") is True
        params = inspect.signature(cls.__init__).parameters
        assert set(table) == set(params) - {"self"}, name
        built, default = cls(**table), cls()
        for key in table:
            assert getattr(built, key) == getattr(default, key), (name, key)
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    in_filters = []  # whether each line lies inside a [filters.*] table
    current = False
    for line in lines:
        if line.startswith("["):
            current = line.startswith("[filters.")
        in_filters.append(current)
    keys = [i for i, line in enumerate(lines) if in_filters[i] and line and line[0].isalpha() and " = " in line]
    assert len(keys) == sum(len(t) for t in tables.values())
    for i in keys:  # every key has its own comment (source) on the line above
        assert lines[i - 1].startswith("# "), lines[i]


def test_filter_classes_and_names():
    assert GopherRepetitionFilter.name == "gopher_repetition"
    assert GopherQualityFilter.name == "gopher_quality"
    assert C4Filter.name == "c4"
    assert FineWebQualityFilter.name == "fineweb"

"""C4 rules: the line edit (input → expected text), both sides of every document rule and
threshold, switches, metadata, and Chinese lines."""

from __future__ import annotations

import pytest

from webmill.errors import UserError
from webmill.filters.base import Document
from webmill.filters.c4 import C4Filter, count_sentences

SENTENCES = [
    "The river flooded the lower town twice this spring.",
    "Engineers have proposed a new wall along the east bank.",
    "The council will vote on the plan in June.",
    "Residents can comment on the proposal until the end of May.",
    "A public meeting is planned for next week.",
]


def doc(text: str, language: str = "en") -> Document:
    return Document(text=text, id="d1", metadata={"language": language})


def test_line_edit_example():
    text = "\n".join([
        "Home | News | Contact",  # 3 words but ends without punctuation: kept (FineWeb: off)
        "Menu",  # fewer than 3 words: removed
        "  The river flooded the lower town twice this spring.[1]  ",  # citation cut, stripped
        "Please enable JavaScript to view the comments.",  # javascript: removed
        "Engineers have proposed a new wall[edit] along the east bank.",
        "",  # blank: dropped silently
        "This site uses cookies to improve your experience.",  # policy: removed
        "The council will vote on the plan in June. Residents can comment until May.",
        "A public meeting is planned for next week[citation needed].",
        "Read our Privacy Policy and Terms of Use.",  # policy: removed
    ])
    d = doc(text)
    assert C4Filter().filter(d) == (True, None)
    assert d.text == "\n".join([
        "Home | News | Contact",
        "The river flooded the lower town twice this spring.",
        "Engineers have proposed a new wall along the east bank.",
        "The council will vote on the plan in June. Residents can comment until May.",
        "A public meeting is planned for next week.",
    ])
    assert d.metadata["c4_lines_removed"] == 4


def test_terminal_punctuation_rule_is_a_switch():
    text = "\n".join(SENTENCES + ["Share this page on social media", "Wait for it..."])
    d = doc(text)
    assert C4Filter(filter_no_terminal_punct=True).filter(d) == (True, None)
    assert d.text == "\n".join(SENTENCES)
    assert d.metadata["c4_lines_removed"] == 2
    d = doc(text)
    assert C4Filter().filter(d) == (True, None)  # FineWeb default: off
    assert d.metadata["c4_lines_removed"] == 0
    # closing quotes and CJK full stops count as terminal punctuation
    d = doc("\n".join(SENTENCES + ['He said "stop."', "他说了。"]))
    assert C4Filter(filter_no_terminal_punct=True, min_words_per_line=1).filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 0


def test_min_num_sentences_both_sides():
    assert C4Filter().filter(doc("\n".join(SENTENCES))) == (True, None)  # 5 sentences
    d = doc("\n".join(SENTENCES[:4]))
    assert C4Filter().filter(d) == (False, "c4_too_few_sentences")
    assert d.text == "\n".join(SENTENCES[:4])  # a dropped document keeps its text
    # sentences are counted inside lines too: 4 lines holding 5 sentences are enough
    merged = SENTENCES[:3] + [SENTENCES[3] + " " + SENTENCES[4]]
    assert C4Filter().filter(doc("\n".join(merged))) == (True, None)
    assert C4Filter(min_num_sentences=-1).filter(doc(SENTENCES[0])) == (True, None)


def test_min_words_per_line_both_sides():
    d = doc("\n".join(SENTENCES + ["Three words here."]))
    assert C4Filter().filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 0
    d = doc("\n".join(SENTENCES + ["Two words."]))
    assert C4Filter().filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 1
    assert "Two words." not in d.text
    # citation markers are not words
    d = doc("\n".join(SENTENCES + ["Two words.[12]"]))
    C4Filter().filter(d)
    assert d.metadata["c4_lines_removed"] == 1


def test_max_word_length_both_sides():
    ok = "A word of " + "x" * 1000 + " letters here."
    long = "A word of " + "x" * 1001 + " letters here."
    d = doc("\n".join(SENTENCES + [ok]))
    C4Filter().filter(d)
    assert d.metadata["c4_lines_removed"] == 0
    d = doc("\n".join(SENTENCES + [long]))
    assert C4Filter().filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 1
    d = doc("\n".join(SENTENCES + [long]))
    C4Filter(max_word_length=-1).filter(d)
    assert d.metadata["c4_lines_removed"] == 0


@pytest.mark.parametrize("line,reason,switch", [
    ("Lorem ipsum dolor sit amet, consectetur.", "c4_lorem_ipsum", "filter_lorem_ipsum"),
    ("The function body starts with { and ends here.", "c4_curly_bracket",
     "filter_curly_bracket"),
])
def test_document_drops_both_sides(line, reason, switch):
    assert C4Filter().filter(doc("\n".join(SENTENCES + [line]))) == (False, reason)
    assert C4Filter(**{switch: False}).filter(doc("\n".join(SENTENCES + [line]))) == (True, None)
    # a line removed earlier (too few words) does not drop the document (TFDS order)
    short = line.split()[0] + " " + line.split()[1]
    if reason == "c4_curly_bracket":
        short = "{ }"
    assert C4Filter().filter(doc("\n".join(SENTENCES + [short]))) == (True, None)
    # no trigger, no drop
    assert C4Filter().filter(doc("\n".join(SENTENCES + ["Lorem is a name."]))) == (True, None)


@pytest.mark.parametrize("line,switch", [
    ("Please enable JavaScript in your browser.", "filter_javascript"),
    ("By continuing you agree to our use of cookies.", "filter_policy"),
    ("Read the TERMS OF USE before posting.", "filter_policy"),
])
def test_line_removals_are_switches(line, switch):
    d = doc("\n".join(SENTENCES + [line]))
    assert C4Filter().filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 1 and line not in d.text
    d = doc("\n".join(SENTENCES + [line]))
    assert C4Filter(**{switch: False}).filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 0 and line in d.text


def test_remove_citations_switch():
    d = doc("\n".join(SENTENCES[:4] + ["A meeting is planned[3] for next week[edit]."]))
    C4Filter().filter(d)
    assert d.text.endswith("A meeting is planned for next week.")
    d = doc("\n".join(SENTENCES[:4] + ["A meeting is planned[3] for next week[edit]."]))
    C4Filter(remove_citations=False).filter(d)
    assert d.text.endswith("A meeting is planned[3] for next week[edit].")


def test_count_sentences():
    assert count_sentences("One line without an end") == 1
    assert count_sentences("First. Second! Third? Fourth") == 4
    assert count_sentences('He said "yes." Then left.') == 2
    assert count_sentences("Pi is 3.14 exactly.") == 1
    assert count_sentences("第一句。第二句！第三句？") == 3


def test_chinese_lines_count_characters_as_words():
    lines = ["今年夏天北京市政府宣布了一项新的城市绿化计划。",
             "全市将在未来五年内新建三百个社区公园。",
             "市民们普遍对此表示欢迎。认为这将改善城市的空气质量。",
             "专家指出城市绿地可以降低夏季气温。",
             "首页"]  # 2 characters: fewer than 3 words
    d = doc("\n".join(lines), "zh")
    assert C4Filter().filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 1
    assert "首页" not in d.text
    # read as English every line is one whitespace word: all removed, document dropped
    assert C4Filter().filter(doc("\n".join(lines), "en")) == (False, "c4_too_few_sentences")


def test_skip_languages():
    d = doc("Lorem ipsum dolor sit amet.", "la")
    assert C4Filter(skip_languages=["la"]).filter(d) == (True, None)
    assert d.metadata["c4_lines_removed"] == 0


def test_unchanged_text_keeps_the_same_object():
    text = "\n".join(SENTENCES)
    d = doc(text)
    C4Filter().filter(d)
    assert d.text is text


@pytest.mark.parametrize("kwargs,key", [
    ({"filter_javascript": "yes"}, "filter_javascript"),
    ({"min_num_sentences": 2.5}, "min_num_sentences"),
    ({"policy_substrings": ["ok", 3]}, "policy_substrings"),
])
def test_bad_config_raises_user_error(kwargs, key):
    with pytest.raises(UserError, match=rf"\[filters\.c4\] {key}"):
        C4Filter(**kwargs)


def test_reasons_documented():
    for reason in C4Filter.REASONS:
        assert reason in C4Filter.__doc__

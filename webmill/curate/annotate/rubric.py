"""Rubrics, prompts and answer parsing of ``curate annotate``.

The built-in rubric ``edu`` is webmill's own additive 0–5 scale of educational value, written for
webmill after the idea of FineWeb-Edu (Penedo et al. 2024, "The FineWeb Datasets",
arXiv:2406.17557, section 4): a page earns one point for each of five criteria it meets, from
"holds some knowledge at all" to "excellent teaching material", so the score is the number of
criteria met. A user rubric file (plain text or markdown) replaces the criteria text; the answer
format stays webmill's (an integer 0–5), so parsing and the histogram do not change.

Two prompt forms, like the rephrasing prompts (:mod:`webmill.curate.rephrase.prompts`):

* **chat** (instruct models): a system message and a user message holding the rubric, the
  answer format (a short justification, then a last line ``Score: N``) and the document, last;
* **completions** (base models such as the embedded Gemma 3 270M): a one-paragraph rubric
  summary, three short made-up pages with their scores, then the document and ``Score:``;
  generation stops at the end of the line. A user rubric gets no worked examples (they were
  scored with ``edu``): its text, then the document and ``Score (0-5):``.

:func:`parse_answer` turns an answer into ``(score, error)``; :data:`RUBRIC_VERSION` and the
rubric's sha256 form the prompt version of the request cache, so a changed template or rubric
never reuses old answers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from webmill.curate.rephrase.prompts import Prompt
from webmill.errors import UserError
from webmill.storage import Storage, is_url

#: Version of the templates below; change it whenever a template changes.
RUBRIC_VERSION = "annotate-2025-1"
MIN_SCORE, MAX_SCORE = 0, 5

EDU_RUBRIC = """\
Score the educational value of the web page from 0 to 5 by adding one point for each of these \
criteria that the page meets:
1. It holds at least some real knowledge (facts, an explanation, a method) that could help \
someone learn about a topic, even if most of the page is adverts, navigation, product listings \
or chatter.
2. A good part of the page is about learning something: it explains a concept or a process, or \
answers a question, though it may be shallow, disorganised or mixed with unrelated material.
3. The page is coherent teaching material that a school or university student could follow: it \
introduces the main ideas of a subject in a clear order, even if it leaves gaps or contains some \
off-topic text.
4. The page would be genuinely useful in a classroom: clear and consistent writing, substantial \
content at the level of a textbook section or a good tutorial, and very little irrelevant text.
5. The page is excellent teaching material: well structured and thorough, precise explanations \
with examples or exercises, and nothing that distracts from the subject.
Pages that are mainly commercial, promotional, adult, or made of fragments earn few points; \
judge the content, not the topic's prestige."""

_EDU_SUMMARY = ("Web pages scored 0 to 5 for educational value, one point per criterion met: "
                "(1) holds some real knowledge; (2) mostly explains or teaches something; "
                "(3) coherent teaching material a student could follow; (4) clear, substantial, "
                "textbook-quality content with little irrelevant text; (5) excellent, thorough "
                "teaching material with examples. Adverts, shops, forums chatter and fragments "
                "score low.")

# Made-up worked examples of the completion prompt, with the score the edu rubric gives them.
_EXAMPLES = (
    ("Summer SALE!! Free shipping on all orders over $50. Shop men's, women's and kids' shoes. "
     "Sign in | Cart (0) | Track my order | Gift cards. Copyright 2016 ShoeWorld Inc.", 0),
    ("Town council news: the bridge on Mill Road closes for repairs from 3 to 14 May. The bridge "
     "was built in 1962 and carries about 4,000 cars a day. Comments (12) | Share | Older posts",
     1),
    ("How vaccines work. A vaccine trains the immune system without causing the disease. It "
     "contains a weakened or inactivated germ, or one of its proteins. The body answers by making "
     "antibodies and memory cells. If the real germ arrives later, the memory cells recognise it "
     "and the body fights it off quickly, before it can make the person ill. This is why most "
     "vaccines are given before exposure, often in childhood.", 4),
)
SEPARATOR = "\n---\n"
STOP = ("\n", "---")

_SYSTEM = ("You rate web pages for a language-model training set. Read the rubric and the page, "
           "apply the rubric strictly, and answer in the requested format.")
_FORMAT = ("Answer with a justification of at most 80 words, then a last line of exactly the form "
           "`Score: N`, where N is the total number of points, an integer from 0 to 5.")


@dataclass(frozen=True)
class Rubric:
    """A scoring rubric.

    Attributes:
        name: ``"edu"`` or the rubric file's stem (str; recorded in every output row).
        text: the criteria (str).
        builtin: True for ``edu`` (the completion prompt then uses its summary and examples).
    """

    name: str
    text: str
    builtin: bool = False

    @property
    def sha(self) -> str:
        """sha256 hex (64 chars) of the rubric text (:func:`rubric_sha`)."""
        return rubric_sha(self.text)

    @property
    def prompt_version(self) -> str:
        """``RUBRIC_VERSION + "+" + sha256[:12]``: part of the cache key and of every row."""
        return f"{RUBRIC_VERSION}+{self.sha[:12]}"

    @property
    def style(self) -> str:
        """The request-cache ``style`` of this rubric: ``"annotate:<name>"``."""
        return f"annotate:{self.name}"


def rubric_sha(text: str) -> str:
    """sha256 hex digest (64 chars) of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_rubric(spec: str) -> Rubric:
    """The rubric for ``[annotate] rubric``: ``"edu"`` (built in) or a text file's path or URL.

    Raises:
        UserError: the file does not exist, cannot be read, is not UTF-8 or is empty.
    """
    if spec == "edu":
        return Rubric("edu", EDU_RUBRIC, builtin=True)
    name = spec.rstrip("/").rsplit("/", 1)[-1]
    parent = spec[: len(spec.rstrip("/")) - len(name)] or "."
    try:
        text = Storage(parent if is_url(spec) else Path(spec).parent).read_text(name).strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"[annotate] rubric {spec!r}: cannot read the rubric file ({e}); use 'edu' "
                        "or the path of a plain-text/markdown rubric") from e
    if not text:
        raise UserError(f"[annotate] rubric {spec!r}: the file is empty; write the criteria in it")
    return Rubric(Path(name).stem or name, text)


def truncate(text: str, max_chars: int) -> str:
    """``text`` stripped and cut to at most ``max_chars`` characters, at the last whitespace
    when one lies in the second half of the cut (else mid-word)."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space > max_chars // 2 else cut).rstrip()


def build_prompt(rubric: Rubric, document: str, api: str) -> Prompt:
    """The :class:`~webmill.curate.rephrase.prompts.Prompt` scoring ``document`` with ``rubric``.

    Args:
        rubric: from :func:`load_rubric`.
        document: the (already truncated) document text (str).
        api: ``"chat"`` or ``"completions"``.

    Raises:
        ValueError: unknown api.
    """
    doc = document.strip()
    if api == "chat":
        user = f"{rubric.text}\n\n{_FORMAT}\n\nDocument:\n{doc}"
        return Prompt(style=rubric.style, api="chat",
                      messages=({"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}))
    if api != "completions":
        raise ValueError(f"unknown api {api!r}; use 'completions' (base models) or 'chat' (instruct models)")
    if rubric.builtin:
        shots = "".join(f"Page:\n{page}\nScore: {score}{SEPARATOR}" for page, score in _EXAMPLES)
        text = f"{_EDU_SUMMARY}\n\n{shots}Page:\n{doc}\nScore:"
    else:
        text = f"{rubric.text}\n\nPage:\n{doc}\nScore (0-5):"
    return Prompt(style=rubric.style, api="completions", text=text, stop=STOP, label="Score:")


# "Score: 4", "score 4/5", "it scores 3", "**Score:** 3", "Educational score: 2", "score of 3", "Score = -1"
_MENTION = re.compile(r"scor(?:e|es|ed)\b[^0-9\n-]{0,24}?(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_LEADING = re.compile(r"\s*(-?\d+(?:\.\d+)?)(?!\d|\.\d)")
_BARE = re.compile(r"\s*\**\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*\**\s*\.?\s*")


def parse_answer(answer: str, api: str = "chat") -> tuple[int | None, str | None]:
    """The score in a model's answer: ``(score, None)`` or ``(None, "unparseable" | "out_of_range")``.

    The last explicit ``score`` mention wins (``Score: 4``, ``score 4/5``, ``**Score:** 3``,
    ``Educational score: 2``); without one, a completion answer may be a bare leading number
    (``" 3"``, ``"2 points"``) and a chat answer may be a number alone (``"4"``, ``"**4/5**"``).
    A number that is not an integer in 0..5 (``7``, ``-1``, ``3.5``) is ``out_of_range``.
    """
    mentions = _MENTION.findall(answer or "")
    if mentions:
        value = mentions[-1]
    else:
        m = _LEADING.match(answer or "") if api == "completions" else _BARE.fullmatch(answer or "")
        if not m:
            return None, "unparseable"
        value = m.group(1)
    if "." in value or not MIN_SCORE <= int(value) <= MAX_SCORE:
        return None, "out_of_range"
    return int(value), None


def parse_score(answer: str, api: str = "chat") -> int | None:
    """The 0–5 score in ``answer`` (see :func:`parse_answer`), or None when there is none."""
    return parse_answer(answer, api)[0]

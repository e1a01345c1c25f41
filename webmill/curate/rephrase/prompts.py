"""Prompt templates of the rephrasing stage (``curate rephrase``), one per style.

Five styles, after two published recipes (the prompts themselves are written for webmill):

* ``wikipedia`` — rewrite web text as clear encyclopedic prose ("Rephrasing the Web", Maini et
  al. 2024, arXiv:2401.16380: rephrasing in a Wikipedia-like style helps most on noisy text);
* ``qa``, ``distill``, ``extract_knowledge``, ``knowledge_list`` — the four styles that
  Nemotron-CC (Su et al. 2024, arXiv:2412.02595, section 2.3) applies to high-quality documents:
  diverse question–answer pairs, a condensed version, textbook-like knowledge passages, and a
  list of the facts.

Every style has two forms:

* a **completion** prompt (``api="completions"``) for *base* models such as the embedded Gemma 3
  270M: one worked example (a noisy web snippet and the desired output), then the document, then
  the output label; generation stops at :data:`STOP` (the separator that would start another
  example). Base models continue patterns rather than follow instructions, so the example does
  the instructing.
* a **chat** prompt (``api="chat"``) for instruct models (vLLM/SGLang/hosted APIs): a system
  message and a user message holding the instruction and the document.

:data:`PROMPT_VERSION` is part of the request-cache key: change it whenever a template changes,
so cached outputs of an older prompt are not reused.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_VERSION = "2025-1"

STYLES = ("wikipedia", "qa", "distill", "extract_knowledge", "knowledge_list")

# Separator between the worked example and the document in completion prompts; a base model
# that finished its output tends to write it next, so it is also the stop sequence.
SEPARATOR = "\n\n=====\n\n"
STOP = ["=====", "\nWeb text:", "\nSource text:"]

# Default bounds of len(output chars) / len(input chars) per style (validation, see
# ``webmill.curate.rephrase.validate.validate_output``); a paraphrase keeps roughly the length, the
# condensed styles may be much shorter, question–answer pairs may be longer.
LENGTH_BOUNDS: dict[str, tuple[float, float]] = {
    "wikipedia": (0.3, 2.5),
    "qa": (0.15, 3.0),
    "distill": (0.1, 1.3),
    "extract_knowledge": (0.2, 2.5),
    "knowledge_list": (0.1, 2.0),
}

# The worked example shared by all completion prompts: a made-up noisy web snippet.
_EXAMPLE_INPUT = (
    "Welcome back to Greenfield Garden Blog!! Subscribe for weekly tips :)\n"
    "Today: tomatoes. Tomato plants are warm-season crops - frost kills them, so gardeners in "
    "cool regions plant them out only after the last spring frost. Most varieties need 6 to 8 "
    "hours of direct sun a day. Water deeply about twice a week rather than a little every "
    "day, because shallow watering keeps the roots near the surface. "
    "Fruit usually ripens 60-85 days after transplanting depending on the variety.\n"
    "Share this post | Leave a comment | Next: peppers >>"
)

_EXAMPLE_OUTPUT = {
    "wikipedia": (
        "The tomato is a warm-season crop that does not tolerate frost. In regions with cool "
        "springs it is therefore transplanted outdoors only after the last spring frost. Most "
        "cultivars require six to eight hours of direct sunlight per day. Deep watering about "
        "twice a week is preferred to light daily watering, which keeps the roots close to the "
        "surface. Depending on the cultivar, the fruit ripens 60 to 85 days after transplanting."
    ),
    "qa": (
        "Question: Why are tomatoes planted outdoors only after the last spring frost?\n"
        "Answer: Tomatoes are a warm-season crop and frost kills the plants.\n\n"
        "Question: How much sunlight do most tomato varieties need?\n"
        "Answer: Six to eight hours of direct sun per day.\n\n"
        "Question: Is it better to water tomatoes a little every day or deeply twice a week?\n"
        "Answer: Deeply about twice a week; shallow daily watering keeps the roots near the "
        "surface.\n\n"
        "Question: How long after transplanting does the fruit ripen?\n"
        "Answer: Usually 60 to 85 days, depending on the variety."
    ),
    "distill": (
        "Tomatoes are frost-sensitive, so in cool regions they are planted out after the last "
        "spring frost. They need 6–8 hours of direct sun daily and deep watering about twice a "
        "week (shallow daily watering keeps roots shallow). Fruit ripens 60–85 days after "
        "transplanting."
    ),
    "extract_knowledge": (
        "Growing requirements of the tomato\n\n"
        "Tomatoes are warm-season plants: frost kills them. Gardeners in cool climates "
        "therefore wait until the last spring frost has passed before moving young plants "
        "outdoors. The plants need plenty of light, typically six to eight hours of direct sun "
        "each day.\n\n"
        "Watering affects how roots grow. Deep watering about twice a week encourages deep "
        "roots, while a little water every day keeps the roots near the surface. Under these "
        "conditions the fruit ripens 60 to 85 days after transplanting, depending on the variety."
    ),
    "knowledge_list": (
        "- Tomatoes are a warm-season crop.\n"
        "- Frost kills tomato plants.\n"
        "- In cool regions tomatoes are planted outdoors after the last spring frost.\n"
        "- Most tomato varieties need 6 to 8 hours of direct sun per day.\n"
        "- Deep watering about twice a week is better than shallow daily watering.\n"
        "- Shallow watering keeps the roots near the surface.\n"
        "- Tomato fruit ripens 60 to 85 days after transplanting, depending on the variety."
    ),
}

# Completion prompts: a one-line task description and the label that introduces the output.
_COMPLETION = {
    "wikipedia": ("Web texts rewritten as clear, neutral encyclopedia prose (no ads, no "
                  "navigation, no first person).", "Encyclopedia version:"),
    "qa": ("Web texts turned into question and answer pairs that cover their facts.",
           "Questions and answers:"),
    "distill": ("Web texts condensed to a short, accurate summary that keeps every key fact.",
                "Condensed version:"),
    "extract_knowledge": ("Web texts rewritten as textbook passages that teach the knowledge "
                          "they contain.", "Textbook passage:"),
    "knowledge_list": ("Web texts reduced to a list of the facts they state, one per line.",
                       "Facts:"),
}

_SYSTEM = ("You rewrite web documents into clean training text. Use only information from the "
           "document, write in the document's language, and reply with the rewritten text only: "
           "no introduction, no comments, no closing remarks.")

_CHAT = {
    "wikipedia": ("Rewrite the document below as a passage of a well-written encyclopedia "
                  "article: neutral tone, complete sentences, third person. Keep every fact, "
                  "number and name; leave out advertising, navigation, greetings and calls to "
                  "action."),
    "qa": ("Write several question–answer pairs about the document below. Vary the kinds of "
           "questions (facts, reasons, comparisons, how things work), answer each one fully "
           "from the document, and cover its important information. Format every pair as "
           "'Question: ...' on one line and 'Answer: ...' on the next, with a blank line between "
           "pairs."),
    "distill": ("Condense the document below into a short, precise text. Keep all key facts, "
                "numbers and names, drop repetition and filler, and do not add anything."),
    "extract_knowledge": ("Rewrite the knowledge contained in the document below as one or more "
                          "textbook passages that explain it clearly to a student. Leave out "
                          "anything that is not knowledge (ads, navigation, personal chatter)."),
    "knowledge_list": ("List the facts stated in the document below as a bulleted list, one "
                       "self-contained fact per line starting with '- '. Include numbers and "
                       "names; do not add facts that are not in the document."),
}


@dataclass(frozen=True)
class Prompt:
    """One request to a model.

    Attributes:
        style: one of :data:`STYLES`.
        api: ``"completions"`` (then ``text`` is the prompt string) or ``"chat"`` (then
            ``messages`` is an OpenAI-format message list).
        text: completion prompt (str), or ``""`` for chat.
        messages: chat messages (tuple of ``{"role", "content"}`` dicts), or ``()``.
        stop: stop sequences (list of str); empty for chat.
        label: the output label of the completion template (cleaning removes an echo of it).
    """

    style: str
    api: str
    text: str = ""
    messages: tuple = ()
    stop: tuple = ()
    label: str = ""


def check_style(style: str) -> str:
    """Return ``style`` if it is one of :data:`STYLES`, else raise ``ValueError`` naming them."""
    if style not in STYLES:
        raise ValueError(f"unknown rephrasing style {style!r}; known styles: {', '.join(STYLES)}")
    return style


def completion_prompt(style: str, text: str) -> str:
    """Few-shot completion prompt (str) for a base model: task line, worked example, document.

    Args:
        style: one of :data:`STYLES`.
        text: the document segment to rewrite (str).

    Raises:
        ValueError: unknown style.
    """
    task, label = _COMPLETION[check_style(style)]
    return (f"{task}\n\nWeb text:\n{_EXAMPLE_INPUT}\n\n{label}\n{_EXAMPLE_OUTPUT[style]}"
            f"{SEPARATOR}Web text:\n{text.strip()}\n\n{label}\n")


def chat_messages(style: str, text: str) -> list[dict]:
    """Chat prompt for an instruct model: ``[{"role": "system", ...}, {"role": "user", ...}]``.

    Raises:
        ValueError: unknown style.
    """
    instruction = _CHAT[check_style(style)]
    return [{"role": "system", "content": _SYSTEM},
            {"role": "user", "content": f"{instruction}\n\nDocument:\n{text.strip()}"}]


def build_prompt(style: str, text: str, api: str) -> Prompt:
    """The :class:`Prompt` for ``style`` applied to ``text`` through ``api``.

    Args:
        style: one of :data:`STYLES`.
        text: the document segment (str).
        api: ``"completions"`` (base models) or ``"chat"`` (instruct models).

    Raises:
        ValueError: unknown style or api.
    """
    if api == "completions":
        return Prompt(style=style, api=api, text=completion_prompt(style, text), stop=tuple(STOP),
                      label=_COMPLETION[style][1])
    if api == "chat":
        return Prompt(style=style, api=api, messages=tuple(chat_messages(style, text)),
                      label=_COMPLETION[style][1])
    raise ValueError(f"unknown api {api!r}; use 'completions' (base models) or 'chat' (instruct models)")


def example_texts(style: str) -> tuple[str, str]:
    """The worked example of ``style``'s completion prompt: (web text, desired output).

    Validation uses it to reject outputs that copy the example instead of rewriting the document.
    """
    return _EXAMPLE_INPUT, _EXAMPLE_OUTPUT[check_style(style)]


def output_labels() -> list[str]:
    """All completion-template output labels (``"Encyclopedia version:"``, ...), for cleaning."""
    return [label for _, label in _COMPLETION.values()]

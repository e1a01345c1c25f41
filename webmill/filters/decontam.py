"""Benchmark decontamination: drop (or flag) documents sharing a word n-gram with evaluation text.

The rule (GPT-3, Brown et al. 2020, "Language Models are Few-Shot Learners", arXiv:2005.14165,
appendix C): a training document is contaminated when it shares one 13-word n-gram with a
benchmark item, words being lowercased, punctuation-free, whitespace-delimited. datatrove's
``NGramsDecontFilter`` applies the same test with 12-grams and 64-bit n-gram hashes; webmill
defaults to GPT-3's 13.

Words are those of the dedup stage, :func:`webmill.curate.minhash.normalize_words` (NFKD,
lowercase, punctuation and symbols as separators), so a benchmark item and a web page that
differ only in case, punctuation or spacing give the same n-grams. Each word is hashed with
XXH3-64; an n-gram hash is a polynomial over its word hashes (mod 2^64) mixed with the window
length and finalised with the MurmurHash3 64-bit finaliser, computed for all windows of a
document at once with numpy.

Items shorter than ``ngram`` words (short questions, answers) cannot contain an ``ngram``-gram:
an item of at least ``min_words`` words (default 8, GPT-3's minimum "due to spurious collisions
at lower values of N") is indexed whole, as one n-gram of its own length, and documents are
checked for windows of that length too; shorter items are skipped and counted (GPT-3 ignored
examples under 8 words; datatrove's indexer drops items shorter than its n silently).

:class:`NgramIndex` holds the hashes (sorted ``uint64``) and their set ids; it is built by
:func:`webmill.curate.decontam.prepare_index` on the driver and loaded once per worker.
:class:`DecontamFilter` is the per-document rule. Pure numpy: no Ray, no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from webmill.curate.minhash import normalize_words
from webmill.errors import UserError
from webmill.filters.base import BaseFilter, Document, FilterResult, dropped

HASH_VERSION = 1  # bump when the n-gram hash changes (an index of another version is rebuilt)
ACTIONS = ("remove", "flag")
REASON_PREFIX = "decontam_"
FLAG_COLUMN = "decontam_sets"  # flag mode: the matched set names of each kept document
_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial (2^64 / golden ratio)
_LEN = np.uint64(0xC2B2AE3D27D4EB4F)  # length salt (a MurmurHash/xxHash prime)
_NAME_RE = re.compile(r"[^a-z0-9_]+")


def set_name(raw: str) -> str:
    """``raw`` as an eval-set name usable in a drop reason: lowercase, runs of characters other
    than ``[a-z0-9_]`` become ``_`` (``"MMLU-pro test"`` -> ``"mmlu_pro_test"``)."""
    return _NAME_RE.sub("_", raw.lower()).strip("_")


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (uint64 in, uint64 out, same shape)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def word_hashes(text: str | None) -> np.ndarray:
    """XXH3-64 of every normalized word of ``text`` (``uint64``, shape ``(n_words,)``)."""
    words = normalize_words(text)
    return np.fromiter(map(xxhash.xxh3_64_intdigest, words), dtype=np.uint64, count=len(words))


def ngram_hashes(words: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of every window of ``n`` consecutive word hashes.

    Args:
        words: ``uint64`` word hashes (:func:`word_hashes`), shape ``(L,)``.
        n: window length in words, >= 1.

    Returns:
        ``uint64`` of shape ``(max(L - n + 1, 0),)``; window ``i`` covers ``words[i:i+n]``.
        Equal windows give equal hashes; windows of different lengths are salted apart.
    """
    m = len(words) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        acc = words[:m].copy()
        for j in range(1, n):
            acc *= _P
            acc += words[j:j + m]
        acc ^= np.uint64(n) * _LEN
        return _fmix64(acc)


@dataclass(frozen=True, eq=False)
class NgramIndex:
    """The n-gram hashes of the eval sets.

    Attributes:
        hashes: ``uint64`` sorted ascending, shape ``(K,)``; a hash in several sets appears
            once per set.
        set_ids: ``uint16`` shape ``(K,)``, index into ``names`` of each hash's set.
        names: set names in config order (the first matching set names the drop reason).
        lengths: the window lengths present (``ngram`` and the lengths of short items).
        ngram: n-gram length in words.
        min_words: shortest item indexed (shorter items were skipped).

    Lookups first test a one-hash bitmap of at least 64 bits per indexed n-gram (Dolma's
    decontamination Bloom filter, with one hash function and an exact check after it): a
    clean document's windows, almost all absent, cost one gather each (false positives ~1/64,
    then settled by ``np.searchsorted`` on ``hashes``).
    """

    hashes: np.ndarray
    set_ids: np.ndarray
    names: tuple[str, ...]
    lengths: tuple[int, ...]
    ngram: int
    min_words: int

    def __post_init__(self):
        bits = max(16, min(33, int(np.ceil(np.log2(max(len(self.hashes), 1) * 64)))))
        shift = np.uint64(64 - bits)
        words = np.zeros(1 << (bits - 6), dtype=np.uint64)
        idx = self.hashes >> shift
        np.bitwise_or.at(words, idx >> np.uint64(6), np.uint64(1) << (idx & np.uint64(63)))
        object.__setattr__(self, "_bitmap", words)
        object.__setattr__(self, "_shift", shift)

    @classmethod
    def build(cls, sets: Sequence[tuple[str, Iterable[str]]], ngram: int = 13,
              min_words: int = 8) -> tuple["NgramIndex", list[dict]]:
        """Index the items of every set.

        Args:
            sets: ``[(name, items)]`` in config order; ``items`` are benchmark texts (str).
            ngram: words per n-gram (13: GPT-3, appendix C). min_words: see the module docstring.

        Returns:
            ``(index, counts)``: ``counts[i]`` = ``{"name", "items", "items_whole" (shorter than
            ngram, indexed whole), "items_skipped" (under min_words), "ngrams" (distinct)}``.

        Raises:
            UserError: ``ngram``/``min_words`` out of range, a duplicate set name, or more than
                65535 sets.
        """
        check_params(ngram, min_words)
        names = [n for n, _ in sets]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UserError(f"[decontaminate] sets: two eval sets are named {dup[0]!r}; give each a "
                            "distinct name (sets = [{path = \"...\", name = \"...\"}])")
        if len(names) > np.iinfo(np.uint16).max:
            raise UserError(f"[decontaminate] sets: {len(names)} eval sets; at most 65535")
        all_h, all_s, lengths, counts = [], [], {ngram}, []
        for sid, (name, items) in enumerate(sets):
            chunks, c = [], Counter()
            for text in items:
                w = word_hashes(text)
                c["items"] += 1
                if len(w) >= ngram:
                    chunks.append(ngram_hashes(w, ngram))
                elif len(w) >= min_words:
                    chunks.append(ngram_hashes(w, len(w)))
                    lengths.add(len(w))
                    c["items_whole"] += 1
                else:
                    c["items_skipped"] += 1
            h = np.unique(np.concatenate(chunks)) if chunks else np.empty(0, dtype=np.uint64)
            counts.append({"name": name, "items": c["items"], "items_whole": c["items_whole"],
                           "items_skipped": c["items_skipped"], "ngrams": int(len(h))})
            all_h.append(h)
            all_s.append(np.full(len(h), sid, dtype=np.uint16))
        hashes = np.concatenate(all_h) if all_h else np.empty(0, dtype=np.uint64)
        set_ids = np.concatenate(all_s) if all_s else np.empty(0, dtype=np.uint16)
        order = np.lexsort((set_ids, hashes))
        return cls(hashes[order], set_ids[order], tuple(names), tuple(sorted(lengths)), ngram,
                   min_words), counts

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The index as named numpy arrays (for ``np.savez``); inverse of :meth:`from_arrays`."""
        return {"hashes": self.hashes, "set_ids": self.set_ids, "names": np.array(self.names, dtype=str),
                "lengths": np.array(self.lengths, dtype=np.int64),
                "params": np.array([self.ngram, self.min_words, HASH_VERSION], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays) -> "NgramIndex":
        """Rebuild an index from :meth:`to_arrays` output (or a loaded ``.npz``).

        Raises:
            ValueError: the arrays are of another hash version or inconsistent.
        """
        ngram, min_words, version = (int(x) for x in arrays["params"])
        if version != HASH_VERSION:
            raise ValueError(f"n-gram hash version {version}, expected {HASH_VERSION}")
        hashes = np.asarray(arrays["hashes"], dtype=np.uint64)
        set_ids = np.asarray(arrays["set_ids"], dtype=np.uint16)
        names = tuple(str(x) for x in arrays["names"])
        if hashes.shape != set_ids.shape or (len(hashes) and int(set_ids.max()) >= len(names)) \
                or np.any(hashes[1:] < hashes[:-1]):
            raise ValueError("hashes/set_ids are not a sorted index of the named sets")
        return cls(hashes, set_ids, names, tuple(int(x) for x in arrays["lengths"]), ngram, min_words)

    def match(self, words: np.ndarray) -> dict[int, int]:
        """Which sets a document's windows hit.

        Args:
            words: the document's word hashes (:func:`word_hashes`).

        Returns:
            ``{set_id: windows}``: for each set hit, how many of the document's windows (of
            every indexed length) are n-grams of that set; ``{}`` for a clean document.
        """
        if not len(self.hashes):
            return {}
        grams = [ngram_hashes(words, n) for n in self.lengths if n <= len(words)]
        if not grams:
            return {}
        g = np.concatenate(grams) if len(grams) > 1 else grams[0]
        idx = g >> self._shift
        g = g[((self._bitmap[idx >> np.uint64(6)] >> (idx & np.uint64(63))) & np.uint64(1)).astype(bool)]
        if not len(g):
            return {}
        lo = np.searchsorted(self.hashes, g, "left")
        hi = np.searchsorted(self.hashes, g, "right")
        hit = hi > lo
        if not hit.any():
            return {}
        lo, hi = lo[hit], hi[hit]
        if np.all(hi - lo == 1):  # each matched n-gram in one set: the common case
            ids = self.set_ids[lo]
        else:
            ids = np.concatenate([self.set_ids[a:b] for a, b in zip(lo, hi)])
        counts = np.bincount(ids, minlength=len(self.names))
        return {int(s): int(counts[s]) for s in np.flatnonzero(counts)}


def check_params(ngram, min_words) -> None:
    """Validate ``[decontaminate] ngram`` and ``min_words`` (ints, 1 <= min_words <= ngram).

    Raises:
        UserError: naming the key and the accepted range.
    """
    for key, v in (("ngram", ngram), ("min_words", min_words)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"[decontaminate] {key} must be a positive integer, got {v!r}")
    if min_words > ngram:
        raise UserError(f"[decontaminate] min_words ({min_words}) must not exceed ngram ({ngram})")


class DecontamFilter(BaseFilter):
    """Drop (``action="remove"``) or flag (``action="flag"``) documents that share an n-gram
    with an eval set.

    Reasons: ``decontam_<set>`` of the first set hit, in config order (``remove`` only; ``flag``
    keeps every document and sets ``doc.metadata["decontam_sets"]`` to the sets hit, in config
    order, ``[]`` for a clean document). A removed document records the windows matched (all
    sets together) as ``drop_value``, no threshold (one window suffices), and a detail naming
    every set hit with its windows, ``"n-grams matched: gsm8k 4, mmlu 1"``
    (:func:`webmill.filters.base.dropped`).

    Counts, since construction or :meth:`reset`: ``documents[name]`` (documents hitting the
    set; a document may count for several sets) and ``ngrams[name]`` (their windows matching
    the set).

    Args:
        index: the eval sets' :class:`NgramIndex` (loaded once per worker).
        action: ``"remove"`` or ``"flag"``.

    Raises:
        UserError: unknown ``action``.
    """

    name = "decontaminate"
    REASONS: tuple[str, ...] = ()  # ``decontam_<set>``: made from the config's set names

    def __init__(self, index: NgramIndex, action: str = "remove"):
        if action not in ACTIONS:
            raise UserError(f"[decontaminate] action must be one of {', '.join(ACTIONS)}, got {action!r}")
        self.index, self.action = index, action
        self.reasons = tuple(REASON_PREFIX + n for n in index.names)
        self.reset()

    def reset(self) -> None:
        """Zero the per-set counts (the driver does it per input file)."""
        self.documents: Counter = Counter()
        self.ngrams: Counter = Counter()

    def filter(self, doc: Document) -> FilterResult:
        """Keep or drop ``doc`` (see the class docstring); ``doc.text`` is not changed."""
        found = self.index.match(word_hashes(doc.text))
        names = [self.index.names[s] for s in sorted(found)]
        for s in sorted(found):
            self.documents[self.index.names[s]] += 1
            self.ngrams[self.index.names[s]] += found[s]
        if self.action == "flag":
            doc.metadata[FLAG_COLUMN] = names
            return True, None
        if names:
            hits = ", ".join(f"{self.index.names[s]} {found[s]}" for s in sorted(found))
            return dropped(doc, REASON_PREFIX + names[0], sum(found.values()), None,
                           f"n-grams matched: {hits}")
        return True, None

    def stats(self) -> dict:
        """``{"action", "sets": {name: {"documents", "ngrams"}}}`` with every set, in config order."""
        return {"action": self.action,
                "sets": {n: {"documents": int(self.documents[n]), "ngrams": int(self.ngrams[n])}
                         for n in self.index.names}}

"""A seeded corpus of short movie-review sentences whose label follows known rules.

Written by hand because no library generates sentiment text with token-level ground truth.
Sentences are built from fixed word lists (so the vocabulary never depends on the seed)::

    [filler] CLAUSE [but CLAUSE] [filler]
    CLAUSE = the|this [MODIFIER] NOUN was|is|seemed [NEGATOR] [INTENSIFIER] ADJECTIVE
           | i [did|do|would|could NEGATOR] [really|truly] VERB the|this NOUN

At most 16 tokens, so nothing is ever truncated. Labels are exactly balanced.

Label rules (applied by :func:`sentiment_rule`; the generator labels every sentence with it,
so there is no label noise):

1. **Contrast**: if the sentence contains ``but``, only the clause after the last ``but``
   decides; the clause before it is ignored.
2. In the deciding clause, the **sentiment word** (a positive or negative adjective or verb, see
   ``POSITIVE_WORDS`` / ``NEGATIVE_WORDS``) gives the polarity; if there are several, the last.
3. **Negation**: if the nearest token before the sentiment word, skipping intensifiers, is a
   negator (``not``, ``never``), the polarity flips ("not very good" is negative).
4. **Intensifiers** (``very``, ``really``, ...) never flip; fillers and nouns ("the movie",
   "plot", "yesterday") carry no sentiment.

The tokens that decide the label are the deciding sentiment word and, when negated, its negator.
Contrast sentences put opposite polarities in their two clauses, so the first clause is a
decoy that a model must learn to ignore.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from auditkit.card import TextSpec
from auditkit.data.base import AuditData, DataError
from auditkit.data.readers import stratified_split, tokenize

MAXLEN = 16
PAD, UNK = "<pad>", "<unk>"
CLASS_NAMES = ["negative", "positive"]

POSITIVE_ADJECTIVES = ["good", "great", "excellent", "wonderful", "brilliant", "enjoyable",
                       "superb", "delightful", "fantastic", "charming", "moving", "clever"]
NEGATIVE_ADJECTIVES = ["bad", "terrible", "awful", "boring", "dull", "poor", "horrible",
                       "dreadful", "weak", "disappointing", "clumsy", "tedious"]
POSITIVE_VERBS = ["love", "enjoy", "like", "adore", "admire", "recommend"]
NEGATIVE_VERBS = ["hate", "dislike", "loathe", "despise", "regret", "resent"]
POSITIVE_WORDS = frozenset(POSITIVE_ADJECTIVES + POSITIVE_VERBS)
NEGATIVE_WORDS = frozenset(NEGATIVE_ADJECTIVES + NEGATIVE_VERBS)
SENTIMENT_WORDS = POSITIVE_WORDS | NEGATIVE_WORDS
NEGATORS = frozenset(["not", "never"])
_NEGATOR_LIST = sorted(NEGATORS)
INTENSIFIERS = ["very", "really", "truly", "extremely", "quite", "so"]
VERB_INTENSIFIERS = ["really", "truly"]
NEGATED_AUXILIARIES = ["did", "do", "would", "could"]  # "i did not love", "i would never like"
CONTRAST = "but"

NOUNS = ["movie", "film", "plot", "acting", "actor", "actress", "ending", "soundtrack", "script",
         "director", "cast", "story", "dialogue", "scenery", "sequel", "villain", "camera", "pace"]
NOUN_MODIFIERS = ["main", "final", "new", "whole", "second", "old"]
DETERMINERS = ["the", "this"]
COPULAS = ["was", "is", "seemed"]
PREFIXES = ["yesterday", "honestly", "overall", "frankly", "today", "again", "well"]
SUFFIXES = ["yesterday", "today", "again", "overall", "tonight", "though"]
SUBJECT = "i"

RULES = (
    "If the sentence contains 'but', only the clause after the last 'but' decides. In that "
    "clause the last sentiment word (positive/negative adjective or verb) gives the polarity, "
    "flipped when the nearest preceding token other than an intensifier is 'not' or 'never'. "
    "Intensifiers (very, really, truly, extremely, quite, so) never flip; nouns and fillers "
    "carry no sentiment. Relevant tokens: the deciding sentiment word and its negator, if any."
)


def build_vocab() -> list[str]:
    """The corpus vocabulary: ``["<pad>", "<unk>", *sorted words]`` (index = token id)."""
    words = set(POSITIVE_WORDS) | set(NEGATIVE_WORDS) | set(NEGATORS) | set(INTENSIFIERS)
    words |= set(NOUNS) | set(NOUN_MODIFIERS) | set(DETERMINERS) | set(COPULAS)
    words |= set(PREFIXES) | set(SUFFIXES) | set(NEGATED_AUXILIARIES) | {CONTRAST, SUBJECT}
    return [PAD, UNK, *sorted(words)]


def _vocab_list(vocab: Sequence[str] | TextSpec) -> list[str]:
    return list(vocab.vocab) if isinstance(vocab, TextSpec) else list(vocab)


def encode(
    sentence: str, vocab: Sequence[str] | TextSpec, maxlen: int | None = MAXLEN
) -> np.ndarray:
    """Token ids of ``sentence`` (lower-cased, split on whitespace); unknown words map to <unk>.

    Returns int64 ``[maxlen]`` right-padded with <pad> (and truncated), or ``[n_tokens]``
    unpadded when ``maxlen`` is None.
    """
    words = _vocab_list(vocab)
    index = {w: i for i, w in enumerate(words)}
    unk = index[UNK]
    ids = [index.get(tok, unk) for tok in tokenize(sentence)]
    if maxlen is not None:
        ids = ids[:maxlen] + [index[PAD]] * max(0, maxlen - len(ids))
    return np.asarray(ids, dtype=np.int64)


def decode(ids: Sequence[int] | np.ndarray, vocab: Sequence[str] | TextSpec) -> list[str]:
    """Tokens of ``ids`` ``[L]``, with padding dropped."""
    words = _vocab_list(vocab)
    return [words[int(i)] for i in ids if words[int(i)] != PAD]


def sentiment_rule(tokens: Sequence[str]) -> tuple[int, list[int]]:
    """Apply the label rules to ``tokens`` (lower-case words).

    Returns ``(label, relevant_positions)``: label 1 = positive, 0 = negative; the positions of
    the deciding sentiment word and of its negator when negated. Raises ``ValueError`` if the
    deciding clause holds no sentiment word (the rules then do not define a label).
    """
    tokens = list(tokens)
    start = max((i + 1 for i, t in enumerate(tokens) if t == CONTRAST), default=0)
    hits = [i for i in range(start, len(tokens)) if tokens[i] in SENTIMENT_WORDS]
    if not hits:
        raise ValueError(f"no sentiment word decides {' '.join(tokens)!r}")
    word = hits[-1]
    label = 1 if tokens[word] in POSITIVE_WORDS else 0
    relevant = [word]
    j = word - 1
    while j >= start and tokens[j] in INTENSIFIERS:
        j -= 1
    if j >= start and tokens[j] in NEGATORS:
        label = 1 - label
        relevant.insert(0, j)
    return label, relevant


def label_preserving_roles(same_part_of_speech: bool = True) -> dict[str, str]:
    """``word -> role`` such that replacing a word by another of the same role keeps the label.

    The label (:func:`sentiment_rule`) depends only on where "but", the sentiment words and their
    polarity, the negators and the intensifiers are. So a word may only become a word of the
    same role: positive -> positive, negative -> negative, intensifier -> intensifier, any other
    word -> another such word; negators and "but" are ``"protected"`` (never replaced). Under
    this rule every substitution provably keeps the label.

    With ``same_part_of_speech`` (default) the roles are the generator's word lists, so the
    sentence also stays grammatical and in-distribution: a noun only becomes a noun, a positive
    adjective a positive adjective, a copula a copula, ...; "i" is never replaced.
    """
    if same_part_of_speech:
        groups: dict[str, Sequence[str]] = {
            "positive adjective": POSITIVE_ADJECTIVES, "negative adjective": NEGATIVE_ADJECTIVES,
            "positive verb": POSITIVE_VERBS, "negative verb": NEGATIVE_VERBS,
            "intensifier": INTENSIFIERS, "noun": NOUNS, "modifier": NOUN_MODIFIERS,
            "determiner": DETERMINERS, "copula": COPULAS, "auxiliary": NEGATED_AUXILIARIES,
            "filler": PREFIXES + SUFFIXES,
            "protected": [*_NEGATOR_LIST, CONTRAST, SUBJECT],
        }
    else:
        groups = {"positive": sorted(POSITIVE_WORDS), "negative": sorted(NEGATIVE_WORDS),
                  "intensifier": INTENSIFIERS, "protected": [*_NEGATOR_LIST, CONTRAST]}
    role: dict[str, str] = {}
    for name, words in groups.items():
        for w in words:
            role.setdefault(w, name)  # "really" is an intensifier first; fillers repeat
    return role


def _pick(rng: np.random.Generator, words: Sequence[str]) -> str:
    return words[int(rng.integers(len(words)))]


def _clause(rng: np.random.Generator, polarity: int, negate: bool) -> list[str]:
    """One clause (at most 7 tokens) whose possibly negated sentiment word gives ``polarity``."""
    word_positive = bool(polarity) != negate
    if rng.random() < 0.35:  # i [did not] [really] love this film
        word = _pick(rng, POSITIVE_VERBS if word_positive else NEGATIVE_VERBS)
        aux = [_pick(rng, NEGATED_AUXILIARIES)] if negate else []
        negator = [_pick(rng, _NEGATOR_LIST)] if negate else []
        intensifier = [_pick(rng, VERB_INTENSIFIERS)] if rng.random() < 0.3 else []
        noun_phrase = [_pick(rng, DETERMINERS), _pick(rng, NOUNS)]
        return [SUBJECT, *aux, *negator, *intensifier, word, *noun_phrase]
    # the [main] movie was [not] [very] good
    word = _pick(rng, POSITIVE_ADJECTIVES if word_positive else NEGATIVE_ADJECTIVES)
    noun_phrase = [_pick(rng, DETERMINERS)]
    if rng.random() < 0.25:
        noun_phrase.append(_pick(rng, NOUN_MODIFIERS))
    noun_phrase.append(_pick(rng, NOUNS))
    copula = _pick(rng, COPULAS)
    # "seemed never good" is not English; "seemed not good" is.
    negator = [("not" if copula == "seemed" else _pick(rng, _NEGATOR_LIST))] if negate else []
    intensifier = [_pick(rng, INTENSIFIERS)] if rng.random() < 0.35 else []
    return [*noun_phrase, copula, *negator, *intensifier, word]


def _sentence(rng: np.random.Generator, label: int) -> tuple[list[str], bool]:
    """Tokens (at most 16) of one sentence with the given label, and whether it has "but"."""
    contrast = rng.random() < 0.3
    tokens = [_pick(rng, PREFIXES)] if rng.random() < 0.3 else []
    if contrast:  # a decoy clause of the opposite polarity, then "but", then the deciding one
        tokens += _clause(rng, 1 - label, negate=rng.random() < 0.3) + [CONTRAST]
    tokens += _clause(rng, label, negate=rng.random() < 0.3)
    if rng.random() < 0.2 and len(tokens) < MAXLEN:
        tokens.append(_pick(rng, SUFFIXES))
    return tokens, contrast


def load_reviews(n: int = 12_000, seed: int = 0, test_fraction: float = 0.25) -> AuditData:
    """Generate ``n`` labelled sentences and split them, stratified and seeded, into train/test.

    Returns text :class:`AuditData`: ``x_*`` ``[N, 16]`` int64 token ids right-padded with 0,
    ``y_*`` ``[N]`` int64 (1 = positive). ``ground_truth["token_relevance_test"]`` (and
    ``_train``) are bool ``[N, 16]`` masks of the deciding tokens; ``subsets["negation"]`` and
    ``subsets["contrast"]`` are bool ``[N_test]`` masks; ``ground_truth["sentiment_words"]`` the
    words that carry polarity; ``substitution_roles`` the label-preserving substitution rule
    (:func:`label_preserving_roles`).
    """
    if n < 40:
        raise DataError(f"reviews: n={n} is too small; use n >= 40")
    rng = np.random.default_rng(seed)
    vocab = build_vocab()
    index = {w: i for i, w in enumerate(vocab)}
    x = np.zeros((n, MAXLEN), dtype=np.int64)
    relevance = np.zeros((n, MAXLEN), dtype=bool)
    labels = np.tile(np.arange(2, dtype=np.int64), n // 2 + 1)[:n]
    rng.shuffle(labels)
    negation = np.zeros(n, dtype=bool)
    contrast = np.zeros(n, dtype=bool)
    for i in range(n):
        tokens, contrast[i] = _sentence(rng, int(labels[i]))
        label, relevant = sentiment_rule(tokens)
        if label != labels[i]:  # the generator must agree with the documented rules
            raise RuntimeError(f"reviews generator disagrees with its rules on {tokens}")
        x[i, : len(tokens)] = [index[t] for t in tokens]  # every generated word is in vocab
        relevance[i, relevant] = True
        negation[i] = len(relevant) == 2
    tr, te = stratified_split(labels, test_fraction, seed, "reviews")
    return AuditData(
        name="reviews",
        task="text-classification",
        x_train=x[tr],
        y_train=labels[tr],
        x_test=x[te],
        y_test=labels[te],
        class_names=list(CLASS_NAMES),
        text=TextSpec(vocab=vocab, pad_token=PAD, unk_token=UNK),
        ground_truth={
            "token_relevance_test": relevance[te],
            "token_relevance_train": relevance[tr],
            "rules": RULES,
            "sentiment_words": sorted(SENTIMENT_WORDS),
        },
        subsets={"negation": negation[te], "contrast": contrast[te]},
        substitution_roles=label_preserving_roles(),
        meta={"source": "auditkit.data.reviews generator", "n": n, "seed": seed,
              "test_fraction": test_fraction},
    )


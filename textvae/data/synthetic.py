"""Synthetic English-like corpus: the package's embedded default data set.

`textvae train` with no data trains on sentences written here by a small
probabilistic grammar, so a fresh machine with no network can still train and
evaluate a model. Every sentence carries four latent factors, each drawn
uniformly: `topic` (which nouns, verbs, objects and places appear), `tense`
(verb morphology: "chased" / "chases" / "will chase"), `number` (subject noun
and verb agreement: "the dog chases" / "the dogs chase") and `sentiment`
(adjectives, adverbs and evaluative clauses). The factors change the words in
visible ways, so a VAE can learn to store them in its latent code, and the
labels let us check that it did. Other choices (sentence shape, synonyms,
optional phrases) add variety. Only the standard library is used, and all
randomness comes from `random.Random(seed)`: the same seed gives byte-identical
output on every machine.
"""

from __future__ import annotations

import json
import os
import pathlib
import random

from textvae.checks import is_whole
from textvae.errors import TextVAEError

FACTORS: dict[str, tuple[str, ...]] = {
    "topic": ("animals", "weather", "food", "travel", "work"),
    "tense": ("past", "present", "future"),
    "number": ("singular", "plural"),
    "sentiment": ("positive", "negative"),
}
SPLITS: tuple[str, ...] = ("train", "valid", "test")
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 6000, "valid": 2000, "test": 2000}
DEFAULT_SEED: int = 0
MIN_TOKENS, MAX_TOKENS = 5, 25

# Per topic: subject nouns, verbs (base form), object nouns, place phrases and
# object adjectives by sentiment. `kind` picks pronouns and determiners.
TOPICS: dict[str, dict] = {
    "animals": {
        "kind": "animal",
        "subjects": "dog cat horse bird fox mouse wolf duck owl puppy".split(),
        "verbs": "chase eat watch follow catch find carry".split(),
        "objects": "ball bone stick nest carrot worm toy".split(),
        "places": ("in the field", "near the barn", "by the river", "in the forest",
                   "on the farm", "under the tree", "in the garden"),
        "positive": "shiny fresh sweet soft".split(),
        "negative": "dirty rotten broken muddy".split(),
    },
    "weather": {
        "kind": "weather",
        "subjects": "storm wind cloud breeze gale shower frost".split(),
        "verbs": "cover soak shake sweep warm reach drench".split(),
        "objects": "hills town roofs streets coast valley fields".split(),
        "places": ("over the sea", "along the coast", "across the plain", "in the north",
                   "in the south", "over the mountains"),
        "positive": "quiet green sunny peaceful".split(),
        "negative": "empty dark gray flooded".split(),
    },
    "food": {
        "kind": "person",
        "subjects": "chef baker waiter guest child neighbor customer".split(),
        "verbs": "bake cook eat taste serve order buy".split(),
        "objects": "bread soup cake rice pie salad pasta cheese noodles".split(),
        "places": ("in the kitchen", "at the market", "in the cafe", "at the table",
                   "in the restaurant", "at the bakery"),
        "positive": "delicious fresh warm tasty".split(),
        "negative": "stale burnt cold bland".split(),
    },
    "travel": {
        "kind": "person",
        "subjects": "traveler tourist pilot driver passenger guide sailor".split(),
        "verbs": "visit reach explore leave photograph see miss".split(),
        "objects": "city island bridge museum harbor station lake temple".split(),
        "places": ("on the train", "at the airport", "on the bus", "by the sea",
                   "in the mountains", "on the boat"),
        "positive": "beautiful famous charming quiet".split(),
        "negative": "crowded dirty boring noisy".split(),
    },
    "work": {
        "kind": "person",
        "subjects": "manager engineer clerk teacher worker nurse boss secretary".split(),
        "verbs": "write finish send sign review check plan".split(),
        "objects": "report contract plan email budget schedule letter project".split(),
        "places": ("at the office", "in the meeting", "at the factory", "at the desk",
                   "in the lab", "at the bank"),
        "positive": "clear useful excellent new".split(),
        "negative": "late messy wrong confusing".split(),
    },
}

# Morphology: explicit tables for irregular forms; regular rules in _past/_third/_plural.
IRREGULAR_PAST: dict[str, str] = {
    "eat": "ate", "catch": "caught", "find": "found", "shake": "shook", "sweep": "swept",
    "buy": "bought", "leave": "left", "see": "saw", "write": "wrote", "send": "sent",
    "plan": "planned",  # doubled final consonant
}
IRREGULAR_PLURAL: dict[str, str] = {"mouse": "mice", "wolf": "wolves", "child": "children"}

# Sentiment-bearing words shared across topics.
SUBJECT_ADJECTIVES: dict[str, dict[str, list[str]]] = {
    "animate": {"positive": "happy cheerful friendly clever brave kind calm proud".split(),
                "negative": "angry grumpy tired lazy nervous lonely rude clumsy".split()},
    "weather": {"positive": "gentle warm mild soft".split(),
                "negative": "cold harsh fierce bitter".split()},
}
ADVERBS: dict[str, list[str]] = {
    "positive": "gladly happily eagerly proudly calmly gently".split(),
    "negative": "sadly angrily reluctantly badly nervously clumsily".split(),
}
EVALUATIONS: dict[str, list[str]] = {
    "positive": "wonderful great fun lovely amazing".split(),
    "negative": "awful terrible boring horrible dreadful".split(),
}
FEELINGS: dict[str, list[str]] = {
    "positive": "happy glad proud excited".split(),
    "negative": "sad tired upset bored".split(),
}
TIMES: dict[str, tuple[str, ...]] = {
    "past": ("yesterday", "last night", "last week", "two days ago", "last summer"),
    "present": ("every day", "every morning", "on weekends", "every week", "every evening"),
    "future": ("tomorrow", "next week", "tomorrow morning", "next summer", "soon"),
}
DETERMINERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("singular", "personal"): ("the", "the", "a", "this", "that", "my", "our"),
    ("plural", "personal"): ("the", "the", "some", "these", "those", "my", "our", "two", "many"),
    ("singular", "weather"): ("the", "the", "a", "this", "that"),
    ("plural", "weather"): ("the", "the", "some", "these", "those", "two", "many"),
}
# Sentence shapes and their weights; each shape sets how likely each optional part is.
SHAPES: tuple[tuple[str, int], ...] = (
    ("simple", 2), ("described", 3), ("located", 3), ("adverbial", 2), ("compound", 4), ("question", 1),
)


def _consonant_y(word: str) -> bool:
    """A final y after a consonant ('carry', not 'play'), which becomes 'i' before a suffix."""
    return word.endswith("y") and word[-2] not in "aeiou"


def _third(verb: str) -> str:
    """Third person singular present: 'chase' -> 'chases', 'watch' -> 'watches', 'carry' -> 'carries'."""
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    return verb[:-1] + "ies" if _consonant_y(verb) else verb + "s"


def _past(verb: str) -> str:
    """Simple past: irregular table first, then 'chase' -> 'chased', 'carry' -> 'carried', 'visit' -> 'visited'."""
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    suffix = "d" if verb.endswith("e") else "ed"
    return verb[:-1] + "i" + suffix if _consonant_y(verb) else verb + suffix


def _plural(noun: str) -> str:
    """Plural noun: irregular table first, then 'fox' -> 'foxes', 'puppy' -> 'puppies', 'dog' -> 'dogs'."""
    if noun in IRREGULAR_PLURAL:
        return IRREGULAR_PLURAL[noun]
    return _third(noun)  # the same spelling rules as the verb suffix


def _verb_group(verb: str, f: dict[str, str], adverb: str | None = None) -> list[str]:
    """Finite verb agreeing with tense and number, with an optional adverb before the main verb."""
    lead = [adverb] if adverb else []
    if f["tense"] == "future":
        return ["will", *lead, verb]
    if f["tense"] == "past":
        return [*lead, _past(verb)]
    return [*lead, verb if f["number"] == "plural" else _third(verb)]


def _be(tense: str, plural: bool) -> list[str]:
    """Forms of 'be': was/were, is/are, will be."""
    if tense == "future":
        return ["will", "be"]
    if tense == "past":
        return ["were" if plural else "was"]
    return ["are" if plural else "is"]


def _aux(tense: str, plural: bool) -> str:
    """Auxiliary for questions and negation: did, does / do, will."""
    return {"past": "did", "future": "will"}.get(tense, "do" if plural else "does")


def _subject(f: dict[str, str], rng: random.Random, adjective: bool) -> list[str]:
    """Subject noun phrase: determiner agreeing in number, optional sentiment adjective, noun."""
    topic = TOPICS[f["topic"]]
    noun = rng.choice(topic["subjects"])
    words = [_plural(noun) if f["number"] == "plural" else noun]
    if adjective:
        kind = "weather" if topic["kind"] == "weather" else "animate"
        words.insert(0, rng.choice(SUBJECT_ADJECTIVES[kind][f["sentiment"]]))
    style = "weather" if topic["kind"] == "weather" else "personal"
    det = rng.choice(DETERMINERS[(f["number"], style)])
    if det == "a" and words[0][0] in "aeiou":
        det = "an"
    return [det, *words]


def _object(f: dict[str, str], ctx: dict[str, str], rng: random.Random, adjective: bool) -> list[str]:
    """Object noun phrase: 'the' or the subject's possessive, optional sentiment adjective, noun."""
    topic = TOPICS[f["topic"]]
    det = ctx["possessive"] if topic["kind"] != "weather" and rng.random() < 0.3 else "the"
    adj = [rng.choice(topic[f["sentiment"]])] if adjective else []
    return [det, *adj, rng.choice(topic["objects"])]


def _pronouns(f: dict[str, str], rng: random.Random) -> dict[str, str]:
    """Pronoun and possessive referring back to the subject (kept for the whole sentence)."""
    if f["number"] == "plural":
        return {"pronoun": "they", "possessive": "their"}
    if TOPICS[f["topic"]]["kind"] != "person":
        return {"pronoun": "it", "possessive": "its"}
    return rng.choice(({"pronoun": "he", "possessive": "his"}, {"pronoun": "she", "possessive": "her"}))


def _flags(shape: str, rng: random.Random, need_sentiment: bool) -> dict[str, bool]:
    """Which optional parts a clause gets, by shape; with `need_sentiment`, at least one part carries it."""
    p = {"subj_adj": 0.25, "obj_adj": 0.2, "adverb": 0.15, "place": 0.1, "time": 0.1, "front_time": 0.3}
    if shape == "described":
        p.update(subj_adj=0.8, obj_adj=0.6)
    elif shape == "located":
        p.update(place=0.7, time=0.6)
    elif shape == "adverbial":
        p.update(adverb=1.0)
    flags = {name: rng.random() < prob for name, prob in p.items()}
    if shape == "located" and not (flags["place"] or flags["time"]):
        flags["time"] = True
    if need_sentiment and not (flags["subj_adj"] or flags["obj_adj"] or flags["adverb"]):
        flags[rng.choice(("subj_adj", "obj_adj", "adverb"))] = True
    return flags


def _extras(f: dict[str, str], rng: random.Random, flags: dict[str, bool]) -> tuple[list[str], list[str], list[str]]:
    """Fronted time, trailing place/time phrases, and the adverb (as a 0- or 1-word list)."""
    time = TIMES[f["tense"]]
    front, tail = [], []
    if flags["place"]:
        tail += rng.choice(TOPICS[f["topic"]]["places"]).split()
    if flags["time"]:
        if flags["front_time"]:
            front = [*rng.choice(time).split(), ","]
        else:
            tail += rng.choice(time).split()
    adverb = [rng.choice(ADVERBS[f["sentiment"]])] if flags["adverb"] else []
    return front, tail, adverb


def _clause(f: dict[str, str], ctx: dict[str, str], rng: random.Random, flags: dict[str, bool]) -> list[str]:
    """Declarative main clause: [time ,] subject verb object [place] [time]."""
    front, tail, adverb = _extras(f, rng, flags)
    verb = rng.choice(TOPICS[f["topic"]]["verbs"])
    return [*front, *_subject(f, rng, flags["subj_adj"]),
            *_verb_group(verb, f, adverb[0] if adverb else None),
            *_object(f, ctx, rng, flags["obj_adj"]), *tail]


def _question(f: dict[str, str], ctx: dict[str, str], rng: random.Random, flags: dict[str, bool]) -> list[str]:
    """Yes/no question: did / does / do / will + subject + verb + object ... ?"""
    flags["front_time"] = False
    _, tail, adverb = _extras(f, rng, flags)
    verb = rng.choice(TOPICS[f["topic"]]["verbs"])
    return [_aux(f["tense"], f["number"] == "plural"), *_subject(f, rng, flags["subj_adj"]), *adverb, verb,
            *_object(f, ctx, rng, flags["obj_adj"]), *tail, "?"]


def _second_clause(f: dict[str, str], ctx: dict[str, str], rng: random.Random) -> tuple[list[str], bool]:
    """A joined clause ('and' / 'because' / 'but' ...) and whether it carries the sentiment itself."""
    tense, plural, sent = f["tense"], f["number"] == "plural", f["sentiment"]
    options = ["and_it", "and_everyone", "then", "then"]
    if TOPICS[f["topic"]]["kind"] != "weather":
        options += ["because", "but"]
    kind = rng.choice(options)
    if kind == "and_it":
        return ["and", "it", *_be(tense, False), rng.choice(EVALUATIONS[sent])], True
    if kind == "and_everyone":
        return ["and", "everyone", *_be(tense, False), rng.choice(FEELINGS[sent])], True
    if kind == "because":
        return ["because", ctx["pronoun"], *_be(tense, plural), rng.choice(FEELINGS[sent])], True
    if kind == "but" and sent == "positive":
        return ["but", ctx["pronoun"], _aux(tense, plural), "not", "mind"], True
    if kind == "but":
        return ["but", "nobody", *_verb_group("like", {"tense": tense, "number": "singular"}), "it"], True
    verb = rng.choice(TOPICS[f["topic"]]["verbs"])
    return ["and", "then", ctx["pronoun"], *_verb_group(verb, f), *_object(f, ctx, rng, False)], False


def _tokens(f: dict[str, str], rng: random.Random) -> list[str]:
    """One sentence for the given factors, as tokens (length not yet checked)."""
    shape = rng.choices([s for s, _ in SHAPES], weights=[w for _, w in SHAPES])[0]
    ctx = _pronouns(f, rng)
    second, carries = _second_clause(f, ctx, rng) if shape == "compound" else ([], False)
    flags = _flags(shape, rng, need_sentiment=not carries)
    if shape == "question":
        return _question(f, ctx, rng, flags)
    return [*_clause(f, ctx, rng, flags), *second, "."]


def generate_sentence(rng: random.Random) -> dict[str, str]:
    """One sentence and its factor labels: {"text": ..., "topic": ..., "tense": ..., "number": ..., "sentiment": ...}."""
    factors = {name: rng.choice(values) for name, values in FACTORS.items()}
    while True:
        tokens = _tokens(factors, rng)
        if MIN_TOKENS <= len(tokens) <= MAX_TOKENS:
            return {"text": " ".join(tokens), **factors}


def _check_size(size: int, split: str | None = None) -> None:
    """Raise a one-line error unless `size` is a non-negative integer."""
    if not is_whole(size) or size < 0:
        where = f" for split {split!r}" if split else ""
        raise TextVAEError(f"synthetic corpus size{where} must be a non-negative integer, got {size!r}")


def generate_split(size: int, seed: int) -> list[dict[str, str]]:
    """`size` labelled sentences drawn with random.Random(seed)."""
    _check_size(size)
    rng = random.Random(seed)
    return [generate_sentence(rng) for _ in range(size)]


def _resolve_sizes(sizes: dict[str, int] | None) -> dict[str, int]:
    """Validate split sizes (default: DEFAULT_SPLIT_SIZES), kept in train/valid/test order."""
    if sizes is None:
        return dict(DEFAULT_SPLIT_SIZES)
    unknown = [name for name in sizes if name not in SPLITS]
    if unknown:
        raise TextVAEError(f"unknown split name {unknown[0]!r} in synthetic corpus sizes; "
                           f"allowed names are {', '.join(SPLITS)}")
    for name, size in sizes.items():
        _check_size(size, name)
    return {name: sizes[name] for name in SPLITS if name in sizes}


def generate_corpus(seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None) -> dict[str, list[dict[str, str]]]:
    """Labelled sentences for each split (train/valid/test); each split uses its own seed derived deterministically from `seed` and the split name (not Python's hash(), which is salted — e.g. seed * 1000 + index of the split)."""
    # Only the splits named in `sizes` are generated; each split's seed depends on its
    # fixed position in SPLITS, so a split's sentences do not depend on which others are asked for.
    return {name: generate_split(size, seed * 1000 + SPLITS.index(name))
            for name, size in _resolve_sizes(sizes).items()}


def write_corpus(out_dir: str | os.PathLike, seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None) -> pathlib.Path:
    r"""Write {split}.txt (one sentence a line, UTF-8, '\n' endings, trailing newline) and {split}.labels.jsonl (one JSON object of factor labels a line, same order) into out_dir (created if needed); return the folder."""
    corpus = generate_corpus(seed, sizes)
    folder = pathlib.Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in corpus.items():
        text = "".join(row["text"] + "\n" for row in rows)
        labels = "".join(json.dumps({k: row[k] for k in FACTORS}) + "\n" for row in rows)
        (folder / f"{split}.txt").write_text(text, encoding="utf-8", newline="\n")
        (folder / f"{split}.labels.jsonl").write_text(labels, encoding="utf-8", newline="\n")
    return folder

"""Word lists of the toy corpus; the tokenizer's vocabulary is built from them.

Everything is lower case: the toy tokenizer lower-cases its input, so "The" and "the" are one
token. Year halves "00".."99" are added by the tokenizer itself.
"""

from __future__ import annotations

from circuitcat.ingest.tasks import GREATER_THAN_NOUNS

# Event nouns of the greater-than frame: the task's nouns, so every eval prompt is in vocabulary.
EVENT_NOUNS: tuple[str, ...] = GREATER_THAN_NOUNS

PEOPLE: tuple[str, ...] = (
    "anna", "ben", "clara", "david", "emma", "frank", "grace", "henry", "iris", "jack", "kate",
    "leo", "maria", "noah", "olga", "peter", "rosa", "sam", "tom", "vera", "the king",
    "the queen", "the poet", "the painter", "the general", "the bishop", "the merchant",
    "the doctor", "the sailor", "the farmer",
)  # fmt: skip

ANIMALS: tuple[str, ...] = (
    "cat", "dog", "horse", "cow", "bird", "fish", "fox", "wolf", "bear", "mouse", "goat",
    "sheep", "duck", "owl", "frog", "lion",
)  # fmt: skip

PLURALS: tuple[str, ...] = (
    "cats", "dogs", "horses", "cows", "birds", "fish", "foxes", "wolves", "bears", "mice",
    "goats", "sheep", "ducks", "owls", "frogs", "lions", "apples", "books", "ships", "coins",
    "trees", "houses", "boats", "stones",
)  # fmt: skip

COLORS: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "black", "white", "brown", "grey", "orange", "purple",
)  # fmt: skip

FOODS: tuple[str, ...] = (
    "bread", "cheese", "grass", "seeds", "meat", "fruit", "honey", "corn", "rice", "soup",
)  # fmt: skip

PLACES: tuple[str, ...] = (
    "london", "paris", "rome", "vienna", "lisbon", "madrid", "berlin", "prague", "venice",
    "athens", "cairo", "dublin", "oslo", "warsaw", "the village", "the city", "the forest",
    "the garden", "the castle", "the harbour", "the market", "the valley",
)  # fmt: skip

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty",
)  # fmt: skip

ADJECTIVES: tuple[str, ...] = (
    "big", "small", "old", "young", "quiet", "loud", "fast", "slow", "happy", "sad", "tall",
    "short", "bright", "dark", "warm", "cold",
)  # fmt: skip

VERBS_PAST: tuple[str, ...] = (
    "saw", "found", "painted", "sold", "bought", "lost", "carried", "followed", "visited",
    "built", "wrote", "read", "fed", "watched",
)  # fmt: skip

# Glue words the templates use.
FUNCTION_WORDS: tuple[str, ...] = (
    "the", "a", "an", "year", "years", "lasted", "from", "to", "in", "and", "ended", "began",
    "started", "having", "was", "were", "born", "died", "until", "it", "before", "after",
    "happened", "same", "so", "is", "are", "of", "there", "plus", "minus", "equals", "what",
    "color", "eats", "lives", "has", "have", "again", "then", "count", "next", "comes", "on",
    "at", "by", "with", "his", "her", "their", "they", "he", "she", "we", "this", "that",
    "later", "earlier", "first", "last", "between", "during", "century", "moved", "returned",
    "says", "yes", "no", "not", "than", "more", "less", "many", "few", "all", "some", "number",
    "word", "words", "list", "sky", "sea", "grass", "snow", "sun", "night", "day", "bigger",
    "smaller", "older", "younger", "name", "called", "opened", "closed", "school", "bridge",
    "church", "library", "museum", "tower", "road", "wall", "mill",
)  # fmt: skip

PUNCTUATION: tuple[str, ...] = (".", ",", "?", ":", "!", ";")

SPECIAL_TOKENS: tuple[str, ...] = ("<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>")
BOS, EOS, PAD, UNK = SPECIAL_TOKENS

YEAR_HALVES: tuple[str, ...] = tuple(f"{y:02d}" for y in range(100))


def vocabulary() -> list[str]:
    """All tokens of the toy tokenizer, specials first, in a fixed order (ids are positions)."""
    seen: dict[str, None] = {}
    groups = (
        SPECIAL_TOKENS,
        YEAR_HALVES,
        PUNCTUATION,
        FUNCTION_WORDS,
        EVENT_NOUNS,
        PEOPLE,
        ANIMALS,
        PLURALS,
        COLORS,
        FOODS,
        PLACES,
        NUMBER_WORDS,
        ADJECTIVES,
        VERBS_PAST,
    )
    for group in groups:
        for entry in group:
            for word in entry.split():
                seen.setdefault(word, None)
    return list(seen)

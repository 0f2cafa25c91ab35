"""The fixed word lists the synthetic programs draw their identifiers from.

Fixed (never filtered against the language registry at run time) so that a user registering a
language cannot change the corpus; a test checks that none is a keyword or built-in.
"""

from __future__ import annotations

NOUNS = (
    "order", "price", "ticket", "widget", "sample", "bucket", "column", "packet", "signal",
    "token", "batch", "cargo", "parcel", "pixel", "vertex", "sensor", "ledger", "budget",
    "voucher", "invoice", "rocket", "planet", "garden", "forest", "river", "bridge", "tunnel",
    "engine", "motor", "wheel", "anchor", "harbor", "island", "castle", "tower", "market",
    "school", "player", "credit", "reward", "bonus", "margin", "weight", "height", "volume",
    "layer", "frame", "stamp", "badge", "coupon", "quota", "tariff", "salary", "rental",
)  # fmt: skip
PLANTED_VERBS = (
    "scale", "warp", "boost", "bend", "twist", "stretch", "shift", "tilt", "nudge", "blend",
    "fold", "spin",
)  # fmt: skip
SHARED_VERBS = (
    "grow", "lift", "drift", "pump", "widen", "skew", "churn", "brew", "forge", "mold", "tune",
    "dampen",
)  # fmt: skip
PLANTED_ADJECTIVES = (
    "PEAK", "CREST", "GRID", "CORE", "TIDE", "RIDGE", "SPARK", "FROST", "EMBER", "STORM", "CLOUD",
    "STONE",
)  # fmt: skip
SHARED_ADJECTIVES = (
    "LIMIT", "SPAN", "DEPTH", "RANK", "TIER", "LEVEL", "PITCH", "RATE", "GAUGE", "NOTCH", "BAND",
    "SLOT",
)  # fmt: skip
LOCAL_VERBS = ("clamp", "grade", "weigh", "probe", "audit", "settle", "measure", "assess")
MAIN_VERBS = (
    "process", "handle", "compute", "summarize", "analyze", "update", "collect", "inspect",
    "review", "prepare", "resolve", "evaluate",
)  # fmt: skip
CLASS_SUFFIXES = ("Service", "Helpers", "Utils", "Logic", "Module", "Tools")
STR_PARAMS = (
    "text", "title", "label", "word", "line", "phrase", "caption", "slug", "message", "headline",
)  # fmt: skip
LIST_PARAMS = (
    "values", "scores", "amounts", "weights", "readings", "points", "ticks", "marks", "levels",
    "ratings",
)  # fmt: skip
INT_PARAMS = ("limit", "threshold", "cutoff", "ceiling", "target", "pivot", "goal")
ACC_NAMES = ("total", "result", "acc", "running", "outcome")
DICT_NAMES = ("seen", "lookup", "table", "cache", "bins", "memo")
LIST_OUT_NAMES = ("picked", "kept", "chosen", "selected", "passing")
LOOP_VARS = ("x", "v", "elem", "cur")
INDEX_VARS = ("i", "j", "k")
HELPER_PARAMS = ("value", "amount", "n", "num")
HELPER_LOCALS = ("rest", "accum")
KEY_NAMES = ("key", "slot_key", "name_key")
COUNTER_NAMES = ("steps", "remaining", "countdown", "left")
LETTERS = "abcdefghijklmnoprstuvwy"

# Each fact kind draws names from 12 x 56 combinations; staying well below that keeps the
# rejection sampling of unused names fast.
MAX_FACTS = 512

"""The synthetic corpus's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from babel_interp.config import ConfigBase
from babel_interp.corpus.synthetic.dialect import supported_languages
from babel_interp.corpus.synthetic.vocabulary import MAX_FACTS
from babel_interp.languages import PAPER_LANGUAGES, get_language


def is_int(x: object) -> bool:
    """Whether ``x`` is an int and not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def canonical_language(field_name: str, name: object) -> str:
    """The canonical name of ``name`` if a synthetic dialect renders it; the error names
    ``SyntheticConfig.<field_name>``."""
    try:
        lang = get_language(name)  # type: ignore[arg-type]
    except ValueError as e:
        raise ValueError(f"SyntheticConfig.{field_name}: {e}") from None
    supported = supported_languages()
    if lang.name not in supported:
        raise ValueError(
            f"SyntheticConfig.{field_name}: the synthetic generator renders only "
            f"{', '.join(supported)}, not {lang.name!r}"
        )
    return lang.name


@dataclass
class SyntheticConfig(ConfigBase):
    """What to generate. Every field is plain data, so a config round-trips through JSON.

    ``docs_per_language`` is one count for every language or a mapping language -> count.
    ``seed`` picks the programs; ``fact_seed`` picks the fact tables (names and values), kept
    apart so that several corpus seeds can share one set of facts. ``planted_in`` is the only
    language whose documents define the ``n_planted_facts`` planted facts; the
    ``n_shared_facts`` control facts are defined wherever they are used.
    ``first_program`` offsets the program ids, so disjoint ranges give disjoint splits (e.g. a
    validation stream starting where the training stream ends). ``min_ops``/``max_ops`` bound the
    number of free statements per main function (mandatory calls, one loop and one condition come
    on top); ``max_facts_per_doc`` bounds the planted facts one program uses.
    """

    languages: tuple[str, ...] = PAPER_LANGUAGES
    docs_per_language: int | dict[str, int] = 1000
    seed: int = 0
    n_planted_facts: int = 64
    planted_in: str = "python"
    n_shared_facts: int = 64
    fact_seed: int = 0
    first_program: int = 0
    min_ops: int = 4
    max_ops: int = 8
    max_facts_per_doc: int = 2

    def validate(self) -> None:
        """Check every field; language names become canonical and a count mapping a dict."""
        if isinstance(self.languages, str):
            raise ValueError(
                f"SyntheticConfig.languages must be a sequence of names, not one string "
                f"({self.languages!r})"
            )
        langs = tuple(canonical_language("languages", name) for name in self.languages)
        if not langs:
            raise ValueError("SyntheticConfig.languages must name at least one language")
        if len(set(langs)) != len(langs):
            raise ValueError(f"SyntheticConfig.languages has duplicates: {langs}")
        self.languages = langs
        self.planted_in = canonical_language("planted_in", self.planted_in)

        if isinstance(self.docs_per_language, Mapping):
            counts = {
                canonical_language("docs_per_language", k): v
                for k, v in self.docs_per_language.items()
            }
            missing = [lang for lang in langs if lang not in counts]
            extra = [lang for lang in counts if lang not in langs]
            if missing or extra:
                raise ValueError(
                    f"SyntheticConfig.docs_per_language must give a count for exactly the "
                    f"requested languages (missing {missing}, not requested {extra})"
                )
            for lang, n in counts.items():
                if not is_int(n) or n <= 0:
                    raise ValueError(
                        f"SyntheticConfig.docs_per_language[{lang!r}] must be a positive "
                        f"integer, got {n!r}"
                    )
            self.docs_per_language = counts
        elif not is_int(self.docs_per_language) or self.docs_per_language <= 0:
            raise ValueError(
                f"SyntheticConfig.docs_per_language must be a positive integer or a mapping, "
                f"got {self.docs_per_language!r}"
            )

        for name in ("seed", "fact_seed"):
            if not is_int(getattr(self, name)):
                raise ValueError(f"SyntheticConfig.{name} must be an integer")
        for name, lo in (
            ("n_planted_facts", 0),
            ("n_shared_facts", 0),
            ("first_program", 0),
            ("min_ops", 1),
            ("max_ops", 1),
            ("max_facts_per_doc", 1),
        ):
            value = getattr(self, name)
            if not is_int(value) or value < lo:
                raise ValueError(
                    f"SyntheticConfig.{name} must be an integer >= {lo}, got {value!r}"
                )
        if self.max_ops < self.min_ops:
            raise ValueError(
                f"SyntheticConfig.max_ops ({self.max_ops}) must be >= min_ops ({self.min_ops})"
            )
        for name in ("n_planted_facts", "n_shared_facts"):
            if getattr(self, name) > MAX_FACTS:
                raise ValueError(
                    f"SyntheticConfig.{name} must be <= {MAX_FACTS} (the name space of a fact "
                    f"table), got {getattr(self, name)}"
                )

    def count_for(self, language: str) -> int:
        """Number of documents requested for ``language``."""
        lang = get_language(language).name
        if lang not in self.languages:
            raise ValueError(f"language {lang!r} is not in SyntheticConfig.languages")
        if isinstance(self.docs_per_language, Mapping):
            return self.docs_per_language[lang]
        return self.docs_per_language

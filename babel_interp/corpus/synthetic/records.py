"""The records the synthetic generator hands out: documents with their sites, facts, items."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

#: What a :class:`Site` marks: a built-in, a user call or constant, or a planted fact.
SITE_KINDS = ("builtin", "call", "fact")


@dataclass
class Site:
    """An identifier use in a document: where a built-in, a user call or a planted fact is due.

    ``offset`` is a character offset into the document text: ``text[offset:]`` starts with
    ``identifier``.
    """

    offset: int
    identifier: str
    concept: str | None
    kind: str
    fact_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "identifier": self.identifier,
            "concept": self.concept,
            "kind": self.kind,
            "fact_id": self.fact_id,
        }


@dataclass
class SyntheticDocument:
    """One program rendered in one language, with its identifier sites."""

    text: str
    language: str
    sites: list[Site]
    doc_id: str
    program_id: int

    def builtin_sites(self) -> list[Site]:
        return [s for s in self.sites if s.kind == "builtin"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "program_id": self.program_id,
            "language": self.language,
            "text": self.text,
            "sites": [s.to_dict() for s in self.sites],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyntheticDocument:
        return cls(
            text=d["text"],
            language=d["language"],
            sites=[Site(**s) for s in d["sites"]],
            doc_id=d["doc_id"],
            program_id=int(d["program_id"]),
        )


@dataclass(frozen=True)
class PlantedFact:
    """A helper function or constant whose value a transfer probe asks for.

    A function fact ``name(x)`` returns ``x * value + offset``; a constant fact ``name`` equals
    ``value``. ``planted`` is True for facts defined only in the planted language and False for
    the shared (defined-everywhere) control facts.
    """

    fact_id: str
    name: str
    kind: str
    value: int
    offset: int
    planted: bool

    @property
    def answer(self) -> str:
        return f" {self.value}"


@dataclass(frozen=True)
class FactItem:
    """A completion prompt in one language whose correct continuation is a fact's value.

    ``variant`` numbers the repeats of one fact (0 for the first); ``item_id`` names the item
    the same way in every language, so the renderings of one item can be joined across languages.
    """

    prompt: str
    answer: str
    fact_id: str
    language: str
    name: str
    kind: str
    value: int
    planted: bool
    variant: int = 0

    @property
    def item_id(self) -> str:
        """``fact_id/variant``: the same in every language."""
        return f"{self.fact_id}/{self.variant}"


class ProbeSite(NamedTuple):
    """A built-in site and its matched control (another identifier due in the same document)."""

    document: SyntheticDocument
    site: Site
    control: Site | None

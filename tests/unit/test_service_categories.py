"""The Aegis-to-OpenAI category table: the code's and the one docs/service.md documents are the same, and every
Aegis category maps to OpenAI categories that exist."""

from __future__ import annotations

from pathlib import Path

from langchain_nemoguard.core.taxonomy import AEGIS_CATEGORIES
from langchain_nemoguard.service.categories import AEGIS_TO_OPENAI, OPENAI_CATEGORIES, openai_categories

DOC = Path(__file__).resolve().parents[2] / "docs" / "service.md"


def _documented() -> dict[str, tuple[str, ...]]:
    lines = DOC.read_text().splitlines()
    start = lines.index("| Aegis 2.0 category | OpenAI categories |") + 2
    table: dict[str, tuple[str, ...]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        aegis, openai = (cell.strip() for cell in line.strip("|").split("|"))
        table[aegis] = () if openai == "-" else tuple(c.strip() for c in openai.split(","))
    return table


def test_the_documented_table_is_the_code() -> None:
    assert _documented() == dict(AEGIS_TO_OPENAI)


def test_every_aegis_category_is_mapped_to_real_openai_categories() -> None:
    assert tuple(AEGIS_TO_OPENAI) == AEGIS_CATEGORIES
    assert {c for cats in AEGIS_TO_OPENAI.values() for c in cats} <= set(OPENAI_CATEGORIES)


def test_a_subcategory_sets_its_parent_and_custom_names_set_nothing() -> None:
    assert openai_categories(["Sexual (minor)"]) == {"sexual/minors", "sexual"}
    assert openai_categories(["Threat", "Violence"]) == {"harassment/threatening", "harassment", "violence"}
    assert openai_categories(["Trade Secret Leak", "Profanity"]) == set()

"""The panel's language from Accept-Language, and the page rendered per language."""

from __future__ import annotations

import pytest

from ari_app.web.i18n import TEXTS, pick_language, render_page


@pytest.mark.parametrize(
    ("header", "default", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "en", "de"),
        ("en-US,en;q=0.9", "de", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.5", "de", "en"),  # the best language we have
        ("fr-FR", "de", "de"),  # none we have: the configured default
        ("en;q=0.2,de;q=0.8", "en", "de"),  # quality wins over order
        ("de,en", "en", "de"),  # equal quality: the first
        ("en;q=0,de;q=0", "de", "de"),  # q=0: not wanted
        ("", "de", "de"),
        (None, "en", "en"),
        ("*", "de", "de"),
        ("de;q=abc, en", "de", "en"),  # a broken range is skipped
    ],
)
def test_pick_language(header: str | None, default: str, expected: str) -> None:
    assert pick_language(header, default) == expected


def test_every_text_in_both_languages() -> None:
    assert set(TEXTS["de"]) == set(TEXTS["en"])


def test_render_page_escapes_and_fills_everything() -> None:
    template = '<html lang="{{lang}}"><title>{{title}}</title><script>{{texts_json}}</script>'
    page = render_page(template, "de").decode("utf-8")
    assert '<html lang="de">' in page and "Teamübersicht" in page
    assert "{{" not in page
    assert '"on_call": "im Gespräch"' in page

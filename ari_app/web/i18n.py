"""The team panel in German and English: the browser's Accept-Language picks, the
configured HOTLINE_PANEL_LANGUAGE (default German) answers everyone else.

Every text of the page lives here: the HTML's own (`{{key}}` in panel.html) and the
script's (handed to panel.js as JSON inside the page, so no second table exists).
"""

from __future__ import annotations

import html
import json
import re

PANEL_LANGUAGES = ("de", "en")

TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "title": "Hotline – Teamübersicht",
        "heading": "Teamübersicht",
        "connecting": "verbinde…",
        "live": "live",
        "reconnecting": "verbinde neu…",
        "hotlines": "Hotlines",
        "no_hotlines": "Noch keine Hotlines.",
        "colleagues": "Kolleginnen und Kollegen",
        "no_colleagues": "Noch keine Kolleginnen und Kollegen.",
        "noscript": "Die Teamübersicht braucht JavaScript für die Live-Anzeige.",
        "available": "verfügbar",
        "on_call": "im Gespräch",
        "unavailable": "nicht verfügbar",
        "logged_in": "Angemeldet",
        "available_count": "Verfügbar",
        "waiting": "Wartende Anrufer",
        "longest_wait": "Längste Wartezeit",
        "callbacks_waiting": "Offene Rückrufe",
        "service_level": "Servicelevel heute ({s} s)",
        "on_duty": "Dienst besetzt",
        "yes": "ja",
        "no": "nein",
        "today": "Heute",
        "calls_per_hour": "Anrufe pro Stunde",
        "calls_per_hour_today": "Anrufe pro Stunde heute",
        "answered": "angenommen",
        "abandoned": "aufgelegt",
        "voicemail": "Sprachnachricht",
        "level_through_day": "Servicelevel im Tagesverlauf",
    },
    "en": {
        "title": "Hotline – team panel",
        "heading": "Team panel",
        "connecting": "connecting…",
        "live": "live",
        "reconnecting": "reconnecting…",
        "hotlines": "Hotlines",
        "no_hotlines": "No hotlines yet.",
        "colleagues": "Colleagues",
        "no_colleagues": "No colleagues yet.",
        "noscript": "The team panel needs JavaScript for live updates.",
        "available": "available",
        "on_call": "on a call",
        "unavailable": "not available",
        "logged_in": "Agents logged in",
        "available_count": "Available",
        "waiting": "Callers waiting",
        "longest_wait": "Longest wait",
        "callbacks_waiting": "Callbacks waiting",
        "service_level": "Service level today ({s} s)",
        "on_duty": "On duty",
        "yes": "yes",
        "no": "no",
        "today": "Today",
        "calls_per_hour": "Calls per hour",
        "calls_per_hour_today": "Calls per hour today",
        "answered": "answered",
        "abandoned": "abandoned",
        "voicemail": "voicemail",
        "level_through_day": "Service level through the day",
    },
}

_RANGE = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def pick_language(accept_language: str | None, default: str) -> str:
    """The panel language for an Accept-Language header (RFC 9110 quality values; `de-DE`
    counts as `de`); `default` when the browser asks for none we have."""
    best, best_q = default, 0.0
    for position, part in enumerate((accept_language or "").split(",")):
        match = _RANGE.match(part)
        if not match:
            continue
        try:
            q = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        lang = match.group(1).lower()
        # Equal weights: the earlier range wins (a tiny penalty per position).
        score = q - position * 1e-6
        if lang in PANEL_LANGUAGES and q > 0 and score > best_q:
            best, best_q = lang, score
    return best


def render_page(template: str, lang: str) -> bytes:
    """panel.html in `lang`: `{{key}}` replaced (HTML-escaped), `{{lang}}` and the
    script's texts as JSON (`{{texts_json}}`, safe inside <script>)."""
    texts = TEXTS[lang]
    page = template.replace("{{lang}}", lang).replace(
        "{{texts_json}}", json.dumps(texts, ensure_ascii=False).replace("</", "<\\/")
    )
    for key, value in texts.items():
        page = page.replace("{{" + key + "}}", html.escape(value))
    return page.encode("utf-8")

"""Every prompt the call flows play, per language: the one table (DESIGN.md, "Languages").

Flows name a prompt by its key, which is the name of the English Asterisk core sound
(`sound:agent-loginok`); `localise()` turns a flow's media list into the sounds of one
language just before it is played. Asterisk looks a sound up in `sounds/<language>/`, so a
prompt that Debian's German set (`asterisk-prompt-de`) has keeps its name in German too;
a prompt the German set lacks is produced at set-up (`hotline prompts generate`: espeak-ng
+ sox) into `sounds/de/hotline/` from the text given here, and the table points there.

`number:` and `digits:` media pass through unchanged: Asterisk speaks them with the
grammar of the playback's language (German: "einundzwanzig"). A `sound:` the table does
not know (a greeting ops configured) passes through too: it is the admin's recording.
A flow that plays a prompt missing here fails tests/unit/test_sounds.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ari_app.domain.errors import InvalidValue

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"
GENERATED_DIR = "hotline"  # sounds/<language>/hotline/: prompts produced at set-up


def language(text: str) -> str:
    """A supported language code (`de`, `en`)."""
    value = text.strip().lower()
    if value not in LANGUAGES:
        raise InvalidValue(f"language: {text!r} must be one of {', '.join(LANGUAGES)}")
    return value


@dataclass(frozen=True)
class Prompt:
    key: str
    sounds: Mapping[str, str]  # language -> sound name (relative to sounds/<language>/)
    texts: Mapping[str, str]  # language -> what to synthesise when set-up must produce it

    def generated(self, lang: str) -> bool:
        return self.sounds[lang].startswith(f"{GENERATED_DIR}/")


def _core(key: str, de: str | None = None) -> Prompt:
    """A core sound; `de` is its German text when Debian's German set lacks it."""
    if de is None:
        return Prompt(key, {"de": key, "en": key}, {})
    return Prompt(key, {"de": f"{GENERATED_DIR}/{key}", "en": key}, {"de": de})


def _own(key: str, de: str, en: str) -> Prompt:
    """A prompt of our own, in no distribution's set: produced at set-up in every language."""
    return Prompt(
        key,
        {lang: f"{GENERATED_DIR}/{key}" for lang in LANGUAGES},
        {"de": de, "en": en},
    )


_ENTRIES = [
    # present in asterisk-prompt-de
    *(
        _core(key)
        for key in (
            "agent-incorrect",
            "agent-loggedoff",
            "agent-loginok",
            "agent-pass",
            "agent-user",
            "auth-incorrect",
            "auth-thankyou",
            "pbx-transfer",
            "minutes",
            "queue-callswaiting",
            "queue-holdtime",
            "queue-less-than",
            "queue-thereare",
            "queue-youarenext",
            "ss-noservice",
            "transfer",
            "vm-and",
            "vm-delete",
            "vm-deleted",
            "vm-from",
            "vm-from-phonenumber",
            "vm-helpexit",
            "vm-incorrect",
            "vm-intro",
            "vm-mailboxfull",
            "vm-message",
            "vm-messages",
            "vm-msgsaved",
            "vm-next",
            "vm-no",
            "vm-nomore",
            "vm-press",
            "vm-received",
            "vm-repeat",
            "vm-savemessage",
            "vm-unknown-caller",
            "vm-youhave",
            "digits/oclock",
            "digits/today",
            "digits/yesterday",
            *(f"digits/day-{day}" for day in range(7)),
            *(f"digits/mon-{month}" for month in range(12)),
        )
    ),
    # missing from it: produced at set-up
    _core("activated", "aktiviert."),
    _core("all-circuits-busy-now", "Alle Leitungen sind zurzeit besetzt."),
    _core("cancelled", "Abgebrochen."),
    _core("cannot-complete-as-dialed", "Diese Nummer ist nicht vergeben."),
    _core("de-activated", "deaktiviert."),
    _core("digits/oh", "null"),
    _core("do-not-disturb", "Nicht verfügbar"),
    _core("feature-not-avail-line", "Diese Funktion ist an diesem Telefon nicht verfügbar."),
    _core("for", "für"),
    _core("goodbye", "Auf Wiederhören."),
    _core("hello-world", "Hallo Welt."),
    _core("minute", "Minute"),
    _core("if-correct-press", "Zum Bestätigen drücken Sie die"),
    _core("im-sorry", "Es tut uns leid."),
    _core("number-not-answering", "Der Teilnehmer antwortet nicht."),
    _core("please-try-again", "Bitte versuchen Sie es noch einmal."),
    _core("please-try-call-later", "Bitte rufen Sie später noch einmal an."),
    _core("sorry-youre-having-problems", "Entschuldigung, es ist ein Fehler aufgetreten."),
    # callbacks that keep the caller's place (issue 15)
    _own(
        "callback-offer",
        "Wenn Sie zurückgerufen werden möchten, drücken Sie die 1."
        " Sie behalten Ihren Platz in der Warteschlange.",
        "To be called back, press 1. You keep your place in the queue.",
    ),
    _own(
        "callback-confirmed",
        "Wir rufen Sie zurück, sobald Sie an der Reihe sind. Auf Wiederhören.",
        "We will call you back when it is your turn. Goodbye.",
    ),
    _own("callback-for", "Rückruf für", "Callback for"),
]
PROMPTS: dict[str, Prompt] = {p.key: p for p in _ENTRIES}


def sound(key: str, lang: str) -> str:
    """The sound of prompt `key` in `lang` (KeyError for a prompt not in the table)."""
    return PROMPTS[key].sounds[lang]


def localise(media: str | Iterable[str], lang: str) -> list[str]:
    """A flow's media list in `lang`: every `sound:` of the table replaced by its sound in
    that language; anything else (numbers, digits, ops' own sounds) unchanged."""
    items = [media] if isinstance(media, str) else media
    out = []
    for item in items:
        if item.startswith("sound:"):
            prompt = PROMPTS.get(item[6:])
            if prompt is not None:
                item = f"sound:{prompt.sounds.get(lang, prompt.key)}"
        out.append(item)
    return out


def fallback_sounds(lang: str) -> str:
    """The dialplan's default fallback announcement in `lang`, joined with & for
    Playback() (the dialplan cannot read this table: set-up checks they agree)."""
    return "&".join(sound(k, lang) for k in ("all-circuits-busy-now", "please-try-call-later"))

"""The prompt table (domain/sounds.py) against a PBX's sounds: what is missing, and the
German prompts Debian's set lacks produced with espeak-ng + sox (`hotline prompts`).

Asterisk finds `sound:<name>` in language L as `<sounds dir>/<L>/<name>.<format>`. Set-up
only ever creates missing files: a recording an admin put in place of a prompt (same name,
any format Asterisk reads) is never overwritten.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ari_app.domain.errors import Unavailable
from ari_app.domain.sounds import LANGUAGES, PROMPTS, Prompt

DEFAULT_SOUNDS_DIR = Path("/usr/share/asterisk/sounds")  # Debian's astdatadir + /sounds
# What Asterisk plays on a telephone line: 8 kHz, mono, 16-bit.
RATE, CHANNELS, BITS = 8000, 1, 16
VOICES = {"de": "de", "en": "en-us"}


@dataclass(frozen=True)
class Missing:
    key: str
    lang: str
    sound: str  # the name Asterisk looks for in sounds/<lang>/


def sounds_needed(languages: Iterable[str] = LANGUAGES) -> list[tuple[Prompt, str]]:
    return [(p, lang) for lang in languages for p in PROMPTS.values()]


def missing(has: Callable[[str, str], bool], languages: Iterable[str] = LANGUAGES) -> list[Missing]:
    """The prompts of the table for which `has(lang, sound)` is False."""
    return [
        Missing(p.key, lang, p.sounds[lang])
        for p, lang in sounds_needed(languages)
        if not has(lang, p.sounds[lang])
    ]


def in_dir(sounds_dir: Path) -> Callable[[str, str], bool]:
    """`has` for a sounds directory on this machine (any format counts)."""

    def has(lang: str, sound: str) -> bool:
        path = sounds_dir / lang / sound
        return any(path.parent.glob(f"{path.name}.*"))

    return has


def in_listing(listing: Mapping[str, Collection[str]]) -> Callable[[str, str], bool]:
    """`has` for what ARI's `GET /sounds?lang=` returned, per language."""
    return lambda lang, sound: sound in listing.get(lang, ())


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"{name} is not installed (scripts/install-system-deps.sh)")
    return path


def synthesise(text: str, lang: str, target: Path) -> None:
    """`text` spoken by espeak-ng, converted by sox to an 8 kHz mono wav at `target`."""
    espeak, sox = _tool("espeak-ng"), _tool("sox")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            [espeak, "-v", VOICES.get(lang, lang), "-s", "140", "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        partial = target.with_name(f".{target.name}.tmp.wav")
        subprocess.run(
            [sox, str(raw), "-r", str(RATE), "-c", str(CHANNELS), "-b", str(BITS), str(partial)],
            check=True,
            capture_output=True,
        )
        partial.replace(target)  # Asterisk never sees half a file


def generate(sounds_dir: Path, *, force: bool = False) -> list[Path]:
    """Produce every generated prompt (sounds/<lang>/hotline/...) that is missing, or all
    of them with `force`; returns the files written."""
    has = in_dir(sounds_dir)
    written = []
    for prompt, lang in sounds_needed():
        if not prompt.generated(lang) or (has(lang, prompt.sounds[lang]) and not force):
            continue
        target = sounds_dir / lang / f"{prompt.sounds[lang]}.wav"
        try:
            synthesise(prompt.texts[lang], lang, target)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Unavailable(f"cannot write {target}: {exc}") from None
        written.append(target)
    return written

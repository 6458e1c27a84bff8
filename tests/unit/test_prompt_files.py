"""`hotline prompts check/generate` against a sounds directory: what is missing, German
prompts synthesised with espeak-ng + sox (8 kHz mono), an admin's recording kept."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from ari_app.domain.sounds import LANGUAGES, PROMPTS
from hotline_cli.main import main

# What set-up synthesises: German prompts Debian's set lacks, our own in every language.
GENERATED = [(p, lang) for lang in LANGUAGES for p in PROMPTS.values() if p.generated(lang)]


def test_check_lists_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompts", "check", "--sounds-dir", str(tmp_path), "--language", "de"]) == 1
    out, err = capsys.readouterr()
    assert "missing  de  hotline/goodbye  (prompt goodbye)" in out
    assert "missing  de  agent-loginok  (prompt agent-loginok)" in out
    assert f"{len(PROMPTS)} prompt(s) missing" in err


def test_generate_writes_missing_german_prompts_and_keeps_recordings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = tmp_path / "de" / "hotline" / "goodbye.gsm"  # an admin's recording
    own.parent.mkdir(parents=True)
    own.write_bytes(b"recorded by the town hall")
    assert main(["prompts", "generate", "--sounds-dir", str(tmp_path)]) == 0
    assert f"{len(GENERATED) - 1} prompt(s) written" in capsys.readouterr().out
    assert own.read_bytes() == b"recorded by the town hall"
    assert not (tmp_path / "de" / "hotline" / "goodbye.wav").exists()
    assert (tmp_path / "en" / "hotline" / "callback-offer.wav").exists()  # no set has it
    with wave.open(str(tmp_path / "de" / "hotline" / "all-circuits-busy-now.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 8000  # more than a second of speech
    assert not list(tmp_path.rglob(".*tmp*")), "no partial files left"
    # idempotent: a second run writes nothing
    assert main(["prompts", "generate", "--sounds-dir", str(tmp_path)]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_list_shows_the_file_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompts", "list", "--language", "de"]) == 0
    out = capsys.readouterr().out
    assert "hotline/goodbye" in out and "Auf Wiederhören." in out

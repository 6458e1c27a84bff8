"""`hotline prompts`: the prompt table against this PBX's sounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ari_app.ari.client import AriClient
from ari_app.ari.errors import AriError
from ari_app.config import load_settings
from ari_app.domain.errors import Unavailable
from ari_app.domain.sounds import LANGUAGES, PROMPTS
from ari_app.services import prompt_files

from . import output
from .common import json_option

SOUNDS_DIR = click.option(
    "--sounds-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Check this sounds directory instead of asking Asterisk (ARI GET /sounds).",
)
LANGUAGE = click.option(
    "--language", "languages", type=click.Choice(LANGUAGES), multiple=True,
    help="Only this language (repeatable; default: all).",
)  # fmt: skip


@click.group()
def prompts() -> None:
    """Prompts callers and agents hear, per language (ari_app/domain/sounds.py).

    \b
    Example:
      hotline prompts check
      hotline prompts list --language de
    """


async def _listing(languages: tuple[str, ...]) -> dict[str, set[str]]:
    settings = load_settings()
    async with AriClient(
        settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app
    ) as ari:
        try:
            return {lang: await ari.list_sounds(lang) for lang in languages}
        except AriError as exc:
            raise Unavailable(f"cannot list Asterisk's sounds: {exc}") from None


@prompts.command()
@SOUNDS_DIR
@LANGUAGE
def check(sounds_dir: Path | None, languages: tuple[str, ...]) -> None:
    """List the prompts Asterisk does not have; exit 1 if any is missing.

    Asks Asterisk through ARI (HOTLINE_ARI_* as for `hotline serve`), so it also works on
    a PBX whose sounds live elsewhere; --sounds-dir checks a directory instead.

    \b
    Example:
      hotline prompts check
      hotline prompts check --sounds-dir /usr/share/asterisk/sounds
    """
    languages = languages or LANGUAGES
    has = (
        prompt_files.in_dir(sounds_dir)
        if sounds_dir is not None
        else prompt_files.in_listing(asyncio.run(_listing(languages)))
    )
    gone = prompt_files.missing(has, languages)
    for item in gone:
        click.echo(f"missing  {item.lang}  {item.sound}  (prompt {item.key})")
    if gone:
        raise Unavailable(
            f"{len(gone)} prompt(s) missing; `hotline prompts generate` produces the"
            " synthesised ones, asterisk-prompt-de has the German set"
        )
    output.done(f"all {len(PROMPTS)} prompts present in {', '.join(languages)}")


@prompts.command()
@click.option(
    "--sounds-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=prompt_files.DEFAULT_SOUNDS_DIR,
    show_default=True,
    help="Asterisk's sounds directory.",
)
@click.option("--force", is_flag=True, help="Also replace files that exist (your recordings!).")
def generate(sounds_dir: Path, force: bool) -> None:
    """Produce the prompts Debian's German set lacks (espeak-ng + sox, 8 kHz mono wav) in
    SOUNDS_DIR/<language>/hotline/. Files that exist are kept (an admin's recording).

    \b
    Example:
      hotline prompts generate
    """
    written = prompt_files.generate(sounds_dir, force=force)
    output.done(f"{len(written)} prompt(s) written" if written else "prompts: nothing to do")


@prompts.command(name="list")
@LANGUAGE
@json_option
def list_(languages: tuple[str, ...], as_json: bool) -> None:
    """The prompt table: each prompt's sound per language (the file to replace with your
    own recording: <sounds dir>/<language>/<sound>.wav).

    \b
    Example:
      hotline prompts list --language de
    """
    rows = [
        {
            "key": p.key,
            "language": lang,
            "sound": p.sounds[lang],
            "generated": p.generated(lang),
            "text": p.texts.get(lang, ""),
        }
        for p, lang in prompt_files.sounds_needed(languages or LANGUAGES)
    ]
    if as_json:
        output.echo_json(rows)
        return
    output.echo_table(
        ["PROMPT", "LANG", "SOUND", "TEXT"],
        [[r["key"], r["language"], r["sound"], r["text"]] for r in rows],
        empty="no prompts",
    )

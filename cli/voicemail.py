"""`hotline voicemail`: list, export (WAV through ARI), mark done, delete."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.client import AriClient
from ari_app.domain.errors import Conflict, Unavailable
from ari_app.services import voicemail as service
from ari_app.services.voicemail import VoicemailInfo

from . import output
from .common import actor, json_option, run, run_with_ari


@click.group()
def voicemail() -> None:
    """Voicemail left on the hotlines. Export and delete need the ARI settings
    (HOTLINE_ARI_URL, HOTLINE_ARI_USER, HOTLINE_ARI_PASSWORD): the audio lives in Asterisk.

    \b
    Example:
      hotline voicemail list 500
      hotline voicemail export 7 -o message.wav
    """


@voicemail.command(name="list")
@click.argument("hotline", required=False)
@click.option("--all", "include_done", is_flag=True, help="Include voicemails marked done.")
@json_option
def list_(hotline: str | None, include_done: bool, as_json: bool) -> None:
    """List voicemails (of HOTLINE), oldest first; done ones only with --all.

    \b
    Example:
      hotline voicemail list 500 --all --json
    """

    async def unit(session: AsyncSession) -> list[VoicemailInfo]:
        return await service.list_voicemails(session, hotline, include_done=include_done)

    rows = run(unit)
    if as_json:
        output.echo_json([r.as_dict() for r in rows])
        return
    output.echo_table(
        ["ID", "HOTLINE", "RECORDED", "CALLER", "LENGTH", "HEARD", "DONE"],
        [
            [
                r.id,
                r.hotline,
                r.recorded_at,
                r.caller_number,
                output.seconds(r.duration_s),
                r.heard_at,
                r.done_at,
            ]
            for r in rows
        ],
        empty="no voicemails",
    )


def _write(path: str, data: bytes, force: bool) -> str:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return "stdout"
    try:
        with Path(path).open("wb" if force else "xb") as out:
            out.write(data)
    except FileExistsError:
        raise Conflict(f"{path} exists already (use --force to overwrite)") from None
    except OSError as exc:
        raise Unavailable(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


@voicemail.command()
@click.argument("voicemail_id", type=int)
@click.option("-o", "--output", "path", help="File to write ('-' for stdout).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def export(voicemail_id: int, path: str | None, force: bool) -> None:
    """Write voicemail VOICEMAIL_ID as a WAV file, fetched from Asterisk.

    \b
    Example:
      hotline voicemail export 7
      hotline voicemail export 7 -o /tmp/message.wav --force
    """

    async def unit(session: AsyncSession, ari: AriClient) -> str:
        info, data = await service.export_recording(session, ari, voicemail_id, actor=actor())
        stamp = info.recorded_at.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
        target = path or f"voicemail-{info.id}-{info.hotline}-{stamp}.wav"
        return _write(target, data, force)

    written = run_with_ari(unit)
    if written != "stdout":
        output.done(f"voicemail {voicemail_id} written to {written}")


@voicemail.command(name="mark-done")
@click.argument("voicemail_ids", type=int, nargs=-1, required=True)
def mark_done(voicemail_ids: tuple[int, ...]) -> None:
    """Mark voicemails as dealt with (they leave the default list).

    \b
    Example:
      hotline voicemail mark-done 7 8
    """

    async def unit(session: AsyncSession) -> list[int]:
        now = datetime.now(UTC)
        marked = []
        for vm_id in voicemail_ids:
            if await service.mark_done(session, vm_id, now, actor=actor()):
                marked.append(vm_id)
        return marked

    marked = run(unit)
    for vm_id in voicemail_ids:
        output.done(f"voicemail {vm_id} " + ("marked done" if vm_id in marked else "was done"))


@voicemail.command()
@click.argument("voicemail_ids", type=int, nargs=-1, required=True)
@click.confirmation_option(prompt="Delete these voicemails and their recordings?")
def delete(voicemail_ids: tuple[int, ...]) -> None:
    """Delete voicemails with their recordings on Asterisk.

    \b
    Example:
      hotline voicemail delete 7 8 --yes
    """

    async def unit(session: AsyncSession, ari: AriClient) -> None:
        for vm_id in voicemail_ids:
            if not await service.delete_voicemail(session, vm_id, ari, actor=actor()):
                output.note(f"note: the recording of voicemail {vm_id} was already gone")

    run_with_ari(unit)
    output.done(f"deleted voicemail {', '.join(str(i) for i in voicemail_ids)}")

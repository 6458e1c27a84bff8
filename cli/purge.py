"""`hotline purge`: data retention (pseudonymise old calls, delete old voicemails)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.ari.client import AriClient
from ari_app.services import retention
from ari_app.services.retention import PurgeResult

from . import output
from .common import DURATION, actor, json_option, run, run_with_ari


@click.command()
@click.option(
    "--older-than",
    type=DURATION,
    help="Age of the data to purge, e.g. 90d (default: HOTLINE_RETENTION, else 90d).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be purged (no ARI needed).")
@json_option
def purge(older_than: int | None, dry_run: bool, as_json: bool) -> None:
    """Remove caller numbers from calls older than the retention period and delete older
    voicemails with their recordings on Asterisk (needs the ARI settings). `hotline serve`
    does this daily.

    \b
    Example:
      hotline purge --older-than 90d --dry-run
      hotline purge --older-than 90d
    """
    seconds = (
        retention.retention_from_env()
        if older_than is None
        else retention.check_retention(older_than)
    )
    cutoff = datetime.now(UTC) - timedelta(seconds=seconds)

    if dry_run:

        async def preview(session: AsyncSession) -> PurgeResult:
            return await retention.purge_preview(session, cutoff)

        result = run(preview)
    else:

        async def unit(session: AsyncSession, ari: AriClient) -> PurgeResult:
            return await retention.purge_older_than(session, cutoff, ari, actor=actor(), path="cli")

        result = run_with_ari(unit)
    if as_json:
        output.echo_json({"cutoff": cutoff.isoformat(), "dry_run": dry_run, **result.as_dict()})
        return
    verb = "would" if dry_run else "did"
    output.done(
        f"data before {cutoff.astimezone():%Y-%m-%d %H:%M} ({verb} purge): "
        f"{result.calls_pseudonymised} call(s) without caller number, "
        f"{result.voicemails_deleted} voicemail(s) deleted"
        + ("" if dry_run else f" ({result.recordings_deleted} recording(s) on Asterisk)")
        + f", {result.audit_rows_pseudonymised} PIN audit row(s) without caller number,"
        f" {result.lockouts_deleted} old PIN lock row(s) deleted"
        + ("" if dry_run else f", {result.orphan_recordings_deleted} orphan recording(s) deleted")
    )
    if result.voicemails_kept:
        output.note(
            f"warning: {result.voicemails_kept} old voicemail(s) kept: Asterisk did not delete"
            " their recordings; see the log, the next purge retries"
        )

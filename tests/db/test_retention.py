"""Data retention: old caller numbers and voicemails (with recordings) go, newer data stays."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import Cli, FakeAri, ari_env
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AuditEntry, Call, CallEvent, CallStatus, Lockout, Outcome, Voicemail
from ari_app.domain.errors import ConfigError
from ari_app.domain.pin import LockoutPolicy
from ari_app.services import admin, auth, retention

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=100)
NEW = NOW - timedelta(days=10)
CUTOFF = NOW - timedelta(days=90)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri() as fake:
        yield fake


async def _data(sessions: Sessions, fake: FakeAri) -> None:
    """An old and a new call, each with an ENTERQUEUE event and a voicemail."""
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro")
        for label, when in (("old", OLD), ("new", NEW)):
            call = Call(
                hotline_id=hotline.id,
                dialled_number="500",
                channel_id=f"chan-{label}",
                node="t",
                caller_number={"old": "+491511", "new": "+491512"}[label],
                status=CallStatus.ENDED,
                outcome=Outcome.VOICEMAIL,
                entered_at=when,
                ended_at=when + timedelta(minutes=1),
            )
            session.add(call)
            await session.flush()
            session.add(
                CallEvent(
                    call_id=call.id,
                    event="ENTERQUEUE",
                    at=when,
                    data={"caller": call.caller_number, "kept": 1},
                )
            )
            name = f"hotline-vm-{label}"
            session.add(
                Voicemail(
                    hotline_id=hotline.id,
                    call_id=call.id,
                    caller_number=call.caller_number,
                    recorded_at=when,
                    duration_s=5,
                    recording_name=name,
                )
            )
            session.add(
                AuditEntry(
                    at=when,
                    actor="agent:101",
                    action="voicemail_deleted",
                    path="device",
                    detail={"caller": call.caller_number, "voicemail_id": 9},
                )
            )
            fake.stored_recordings[name] = {"name": name, "format": "wav"}
            fake.recording_files[name] = b"RIFF"


async def _state(sessions: Sessions) -> dict[str, object]:
    async with sessions() as session:
        calls = {
            c.channel_id: (c.caller_number, c.pseudonymised)
            for c in await session.scalars(select(Call))
        }
        events = {
            channel: data
            for channel, data in await session.execute(
                select(Call.channel_id, CallEvent.data).join(Call, Call.id == CallEvent.call_id)
            )
        }
        voicemails = {
            v.recording_name: v.caller_number for v in await session.scalars(select(Voicemail))
        }
        audit = sorted(
            (e.at < CUTOFF, e.detail)
            for e in await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "voicemail_deleted")
            )
        )
    return {"calls": calls, "events": events, "voicemails": voicemails, "audit": audit}


async def test_purge_removes_old_numbers_and_voicemails(sessions: Sessions, fake: FakeAri) -> None:
    await _data(sessions, fake)
    async with sessions() as session:
        preview = await retention.purge_preview(session, CUTOFF)
    assert (preview.calls_pseudonymised, preview.voicemails_deleted) == (1, 1)
    async with fake.client() as ari, sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, ari)
    assert result == retention.PurgeResult(
        calls_pseudonymised=1, voicemails_deleted=1, recordings_deleted=1, voicemails_kept=0
    )
    assert await _state(sessions) == {
        "calls": {"chan-old": (None, True), "chan-new": ("+491512", False)},
        "events": {"chan-old": {"kept": 1}, "chan-new": {"caller": "+491512", "kept": 1}},
        "voicemails": {"hotline-vm-new": "+491512"},
        "audit": [
            (False, {"caller": "+491512", "voicemail_id": 9}),
            (True, {"voicemail_id": 9}),
        ],
    }
    assert set(fake.stored_recordings) == {"hotline-vm-new"}, "gone from Asterisk too"
    async with sessions() as session:
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "purge"))
    assert audit is not None and audit.path == "system" and audit.detail["voicemails_deleted"] == 1

    # A second run finds nothing more to do.
    async with fake.client() as ari, sessions() as session, session.begin():
        again = await retention.purge_older_than(session, CUTOFF, ari)
    assert again == retention.PurgeResult()


async def test_without_ari_voicemails_stay_but_lose_the_number(
    sessions: Sessions, fake: FakeAri
) -> None:
    await _data(sessions, fake)
    async with sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, None)
    assert (result.voicemails_deleted, result.voicemails_kept) == (0, 1)
    state = await _state(sessions)
    assert state["voicemails"] == {"hotline-vm-old": None, "hotline-vm-new": "+491512"}


async def test_asterisk_failure_keeps_the_voicemail(sessions: Sessions, fake: FakeAri) -> None:
    await _data(sessions, fake)
    fake.fail("DELETE", "/recordings/stored/hotline-vm-old", 500, "disk on fire")
    async with fake.client() as ari, sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, ari)
    assert (result.calls_pseudonymised, result.voicemails_kept) == (1, 1)
    assert set((await _state(sessions))["voicemails"]) == {"hotline-vm-old", "hotline-vm-new"}
    fake.clear_injections()
    async with fake.client() as ari, sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, ari)
    assert (result.voicemails_deleted, result.voicemails_kept) == (1, 0), "retried next time"


async def test_recording_already_gone_still_deletes_the_row(
    sessions: Sessions, fake: FakeAri
) -> None:
    await _data(sessions, fake)
    del fake.stored_recordings["hotline-vm-old"]
    async with fake.client() as ari, sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, ari)
    assert (result.voicemails_deleted, result.recordings_deleted) == (1, 0)


def test_retention_from_env() -> None:
    assert retention.retention_from_env({}) == 90 * 86400
    assert retention.retention_from_env({"HOTLINE_RETENTION": "30d"}) == 30 * 86400
    with pytest.raises(ConfigError, match="HOTLINE_RETENTION"):
        retention.retention_from_env({"HOTLINE_RETENTION": "1h"})
    with pytest.raises(ConfigError, match="HOTLINE_RETENTION"):
        retention.retention_from_env({"HOTLINE_RETENTION": "soon"})


@pytest.fixture
def cli(sessions: Sessions, database_url: str) -> Cli:
    return Cli(database_url)


async def test_cli_purge(cli: Cli, sessions: Sessions, fake: FakeAri) -> None:
    await _data(sessions, fake)
    dry = await cli.json("purge", "--older-than", "30d", "--dry-run")  # no ARI needed
    assert (dry["dry_run"], dry["calls_pseudonymised"], dry["voicemails_deleted"]) == (True, 1, 1)
    assert len((await _state(sessions))["voicemails"]) == 2, "a dry run changes nothing"
    # The default comes from HOTLINE_RETENTION: 200 days keeps everything.
    kept = await cli.ok("purge", env={**ari_env(fake), "HOTLINE_RETENTION": "200d"})
    assert "0 call(s) without caller number, 0 voicemail(s) deleted" in kept.stdout
    result = await cli.ok("purge", "--older-than", "30d", env=ari_env(fake))
    assert "1 call(s) without caller number, 1 voicemail(s) deleted" in result.stdout
    assert "(1 recording(s) on Asterisk)" in result.stdout
    state = await _state(sessions)
    assert state["calls"] == {"chan-old": (None, True), "chan-new": ("+491512", False)}
    assert state["voicemails"] == {"hotline-vm-new": "+491512"}
    assert set(fake.stored_recordings) == {"hotline-vm-new"}
    async with sessions() as session:
        audits = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "purge")))
    assert [a.path for a in audits] == ["cli", "cli"]


async def test_cli_purge_errors(cli: Cli, fake: FakeAri) -> None:
    assert await cli.fails("purge", "--older-than", "1h", env=ari_env(fake)) == (
        "error: retention: must be at least 1d (a day)"
    )
    assert "--older-than: duration" in await cli.fails("purge", "--older-than", "old")
    assert await cli.fails("purge", "--older-than", "90d") == "error: HOTLINE_ARI_URL is not set"
    assert "HOTLINE_RETENTION" in await cli.fails(
        "purge", "--dry-run", env={"HOTLINE_RETENTION": "x"}
    )
    await cli.fails("purge", "--older", code=2)


# --- issue 13, finding 12: PIN audit rows, lockout rows, orphan recordings -----------------


async def _pin_attempts(sessions: Sessions, when: datetime, caller: str) -> None:
    """Three wrong PINs from `caller` at `when`: pin_failed rows and lockout rows naming the
    calling number (as actor, and as the locked subject)."""
    for pin in ("111112", "222223", "333334"):
        await auth.check_pin(
            sessions,
            agent_number="101",
            pin=pin,
            caller=auth.number_subject(caller),
            path="service",
            policy=LockoutPolicy(),
            now=when,
        )


async def test_purge_pseudonymises_callers_in_pin_audit_rows_and_deletes_old_locks(
    sessions: Sessions, fake: FakeAri
) -> None:
    async with sessions() as session, session.begin():
        await admin.create_agent(session, "101", "Ada", pin="735194", device="PJSIP/1001")
    await _pin_attempts(sessions, OLD, "+4915111111")
    await _pin_attempts(sessions, NEW, "+4915122222")
    await auth.check_pin(  # a device subject is no personal data: it stays (refused: locked)
        sessions,
        agent_number="101",
        pin="111112",
        caller="device:PJSIP/1003",
        path="hotdesk",
        policy=LockoutPolicy(),
        now=OLD,
    )
    async with sessions() as session:
        preview = await retention.purge_preview(session, CUTOFF)
    assert (preview.audit_rows_pseudonymised, preview.lockouts_deleted) == (5, 2)
    async with fake.client() as ari, sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, ari)
    assert (result.audit_rows_pseudonymised, result.lockouts_deleted) == (5, 2)
    async with sessions() as session:
        rows = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        locks = {r.subject for r in await session.scalars(select(Lockout))}
    text = " ".join(f"{r.actor} {r.detail}" for r in rows if r.at < CUTOFF)
    assert "+4915111111" not in text
    pin_actions = ("pin_failed", "lockout", "pin_refused_locked")
    old_pin_rows = [r for r in rows if r.at < CUTOFF and r.action in pin_actions]
    assert {r.actor for r in old_pin_rows} == {"number:purged", "device:PJSIP/1003"}
    assert {r.detail.get("subject") for r in old_pin_rows if r.action == "lockout"} == {
        "number:purged",
        "agent:101",
    }
    new_rows = [r for r in rows if CUTOFF <= r.at < NOW and r.action != "purge"]
    assert {r.actor for r in new_rows} == {"number:+4915122222"}, "recent rows stay"
    # the old streak (agent:101 and the old number and device) is gone, the new one stays
    assert locks == {"agent:101", "number:+4915122222"}
    async with fake.client() as ari, sessions() as session, session.begin():
        again = await retention.purge_older_than(session, CUTOFF, ari)
    assert (again.audit_rows_pseudonymised, again.lockouts_deleted) == (0, 0)


async def test_purge_deletes_old_recordings_without_a_row(
    sessions: Sessions, fake: FakeAri
) -> None:
    """A crash between recording and insert leaves a recording without a voicemail row."""
    await _data(sessions, fake)
    async with sessions() as session:
        ids = {c.channel_id: c.id for c in await session.scalars(select(Call))}
    orphan_old = f"hotline-vm-{ids['chan-old']}"  # its call is older than the cutoff
    orphan_new = f"hotline-vm-{ids['chan-new']}"  # too young: may still be on its way
    unknown = f"hotline-vm-{uuid.uuid4()}"  # no call: its age cannot be told
    foreign = "someone-elses-recording"  # not in the app's namespace
    for name in (orphan_old, orphan_new, unknown, foreign, "hotline-vm-garbage"):
        fake.stored_recordings[name] = {"name": name, "format": "wav"}
    async with fake.client() as ari, sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, ari)
    assert result.orphan_recordings_deleted == 1
    assert set(fake.stored_recordings) == {
        "hotline-vm-new",
        orphan_new,
        unknown,
        foreign,
        "hotline-vm-garbage",
    }
    # without ARI nothing is listed, nothing deleted
    fake.stored_recordings[orphan_old] = {"name": orphan_old, "format": "wav"}
    async with sessions() as session, session.begin():
        result = await retention.purge_older_than(session, CUTOFF, None)
    assert result.orphan_recordings_deleted == 0 and orphan_old in fake.stored_recordings

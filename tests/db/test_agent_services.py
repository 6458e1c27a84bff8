"""The services own the rules and the audit rows, whoever calls them (issue 17): an
external target ops never configured is refused by agents.login itself, the phone status
and a refused remote login are audited by services/agents, ops' changes by services/admin
when an actor is given (config apply audits its own way, without one)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ari_app.db.models import AgentLogin, AuditEntry
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import Refused
from ari_app.services import admin, agents

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]
MOBILE = "+4915111"


async def _seed(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        hotline = await admin.create_hotline(session, "500", "Bürgerbüro")
        agent = await admin.create_agent(
            session, "101", "Anna", device="PJSIP/1001", external_numbers=[MOBILE]
        )
        await admin.add_member(session, hotline, agent)


async def _audit(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def test_login_refuses_an_external_number_ops_never_configured(sessions: Sessions) -> None:
    await _seed(sessions)
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, "101")
        with pytest.raises(Refused, match=r"\+4930999 is not an external number of agent 101"):
            await agents.login(
                session,
                agent,
                target=agents.Target("+4930999", TargetKind.EXTERNAL),
                path="cli",
                actor="t",
            )
        hotlines = await agents.login(
            session, agent, target=agents.Target(MOBILE, TargetKind.EXTERNAL), path="cli", actor="t"
        )
        assert [h.number for h in hotlines] == ["500"]


async def test_remote_login_from_an_unknown_number_changes_nothing_but_the_audit(
    sessions: Sessions,
) -> None:
    await _seed(sessions)
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, "101")
        for caller in ("+4930999", None):
            refused = await agents.login_from_number(
                session, agent, caller, path="service", actor="agent:101"
            )
            assert refused is None
        logged = await agents.login_from_number(
            session, agent, MOBILE, path="service", actor="agent:101"
        )
        assert logged is not None and [h.number for h in logged] == ["500"]
    async with sessions() as session:
        assert len(list(await session.scalars(select(AgentLogin)))) == 1
    rows = [(r.action, r.detail.get("caller")) for r in await _audit(sessions)]
    assert rows == [
        ("login_refused", "+4930999"),
        ("login_refused", "anonymous"),
        ("login", None),
    ]


async def test_own_status_by_phone_is_audited_per_hotline_told(sessions: Sessions) -> None:
    await _seed(sessions)
    async with sessions() as session, session.begin():
        agent = await admin.get_agent(session, "101")
        assert await agents.own_statuses(session, agent, "599", path="device", actor="a") == []
        await agents.login(session, agent, target=None, path="device", actor="a")
        [told] = await agents.own_statuses(session, agent, path="device", actor="a")
        assert (told.hotline.number, told.logged_in, told.paused) == ("500", True, False)
        assert (told.agents_in, told.waiting) == (1, 0)
    rows = [(r.action, r.path) for r in await _audit(sessions)]
    assert rows == [("login", "device"), ("status", "device")]


async def test_admin_changes_are_audited_by_the_service_when_an_actor_is_given(
    sessions: Sessions,
) -> None:
    await _seed(sessions)  # without an actor: no audit row (config apply writes its own)
    assert await _audit(sessions) == []
    async with sessions() as session, session.begin():
        hotline = await admin.get_hotline(session, "500")
        agent = await admin.create_agent(session, "102", "Ben", actor="cli:ops")
        await admin.add_member(session, hotline, agent, actor="cli:ops")
        await admin.add_external(session, agent, "+4917000", actor="cli:ops")
        await admin.update_hotline(session, hotline, name="Rathaus", actor="cli:ops")
    rows = [(r.action, r.actor, r.path) for r in await _audit(sessions)]
    assert rows == [
        ("agent_create", "cli:ops", "cli"),
        ("member_add", "cli:ops", "cli"),
        ("agent_number_add", "cli:ops", "cli"),
        ("hotline_update", "cli:ops", "cli"),
    ]
    update = (await _audit(sessions))[-1].detail
    assert update["changed"] == {"name": "Rathaus"} and update["number"] == "500"

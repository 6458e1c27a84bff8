"""The demo a newcomer gets from `make run`: hotline 500 "Bürgerbüro" with two agents bound
to the demo phones 1001 and 1002, logged in."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Hotline
from ari_app.services import admin, agents

DEMO_HOTLINE = "500"
DEMO_AGENTS = (("101", "Anna Amsel", "PJSIP/1001"), ("102", "Ben Buche", "PJSIP/1002"))
DEMO_PIN = "480159"


async def seed_demo(session: AsyncSession) -> bool:
    """Seed when the database has no hotline yet; True when it seeded."""
    if await session.scalar(select(func.count()).select_from(Hotline)):
        return False
    hotline = await admin.create_hotline(
        session, DEMO_HOTLINE, "Bürgerbüro", ring_timeout_s=15, wrapup_s=5, max_wait_s=120
    )
    for number, name, device in DEMO_AGENTS:
        agent = await admin.create_agent(session, number, name, pin=DEMO_PIN, device=device)
        await admin.add_member(session, hotline, agent)
        await agents.login(session, agent, target=None, path="system", actor="demo-seed")
    return True

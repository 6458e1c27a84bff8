"""The call flows' state machines as pictures: Mermaid `stateDiagram-v2`, generated from
each flow's transition table (`hotline flows --graph`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ari_app.flows.base import CallFlow
from ari_app.flows.callback import CallbackFlow
from ari_app.flows.escalation import EscalationFlow
from ari_app.flows.feature import FeatureFlow
from ari_app.flows.greeting import GreetingFlow
from ari_app.flows.handover import HandoverFlow
from ari_app.flows.inbound import InboundFlow
from ari_app.flows.orphan import OrphanFlow
from ari_app.flows.service import ServiceFlow

# Every flow of the app: the dialplan's (app.flow_table) and those the app starts itself.
FLOWS: tuple[type[CallFlow[Any]], ...] = (
    InboundFlow,
    FeatureFlow,
    ServiceFlow,
    HandoverFlow,
    EscalationFlow,
    CallbackFlow,
    OrphanFlow,
    GreetingFlow,
)


def mermaid(flow: type[CallFlow[Any]]) -> str:
    """One flow's table: an arrow per move (labelled with the events that make it), the
    events a state handles without moving as its description."""
    table = flow.table
    assert table is not None, f"{flow.__name__} has no transition table"
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    stays: dict[str, list[str]] = defaultdict(list)
    for (state, event), targets in table.moves.items():
        if not targets:
            stays[state.name].append(event)
        for target in sorted(targets, key=lambda s: s.name):
            edges[(state.name, target.name)].append(event)
    lines = ["stateDiagram-v2", f"    [*] --> {flow.initial.name}"]
    lines += [f"    {a} --> {b} : {', '.join(events)}" for (a, b), events in edges.items()]
    lines += [f"    {state} : {', '.join(events)}" for state, events in stays.items()]
    moving = {a for a, _ in edges}
    lines += [f"    {s.name} --> [*]" for s in table.states if s.name not in moving]
    return "\n".join(lines)


def markdown(flows: tuple[type[CallFlow[Any]], ...] = FLOWS) -> str:
    """Every flow: a heading and its diagram in a fenced `mermaid` block."""
    parts = []
    for flow in flows:
        parts.append(
            f"### {flow.name} ({flow.__name__}, states {flow.initial.__class__.__name__})\n\n"
            f"```mermaid\n{mermaid(flow)}\n```"
        )
    return "\n\n".join(parts) + "\n"

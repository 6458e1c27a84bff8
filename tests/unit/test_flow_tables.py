"""Every call flow's transition table is consistent, and `hotline flows --graph` draws it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from click.testing import CliRunner

import ari_app.flows
from ari_app.app import flow_table
from ari_app.flows.base import CallFlow, handler_name
from ari_app.flows.graph import FLOWS, markdown
from cli.main import hotline


def _subclasses(cls: type[Any]) -> set[type[Any]]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *_subclasses(direct)}}


def test_every_flow_of_the_app_is_drawn() -> None:
    for module in pkgutil.iter_modules(ari_app.flows.__path__):
        importlib.import_module(f"ari_app.flows.{module.name}")
    # A flow names itself; its building blocks (InteractiveFlow, the inbound call's
    # phases) do not.
    flows = {
        cls
        for cls in _subclasses(CallFlow)
        if cls.__module__.startswith("ari_app.") and "name" in vars(cls)
    }
    assert flows == set(FLOWS)
    assert set(flow_table().values()) <= set(FLOWS)
    assert len({flow.name for flow in FLOWS}) == len(FLOWS)


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_table_is_consistent(flow: type[CallFlow[Any]]) -> None:
    table = flow.table
    assert table is not None, f"{flow.__name__} has no transition table"
    states = set(table.states)
    assert flow.initial in states
    # Every state can be reached from the initial one.
    assert table.reachable(flow.initial) == states
    # Every state the table names is one of the flow's states, every event has its handler.
    for (state, event), targets in table.moves.items():
        assert state in states and targets <= states, (state, event)
        handler = getattr(flow, handler_name(event), None)
        assert callable(handler), f"{flow.__name__}: no {handler_name(event)} for {event}"
    # And every handler of the flow is used by the table (no handler it can never reach).
    handled = {handler_name(event) for event in table.events()}
    handlers = {
        name
        for name, _ in inspect.getmembers(flow, inspect.isfunction)
        if name.startswith("on_") and name != "on_database_unavailable"
    }
    assert handlers <= handled, handlers - handled
    # A final state has no way out (the flow has finished); every other state handles Stop
    # (shutdown), and some final state can be reached.
    final = {state for state in states if not any(s is state for s, _ in table.moves)}
    assert final, f"{flow.__name__} never finishes"
    for state in states - final:
        assert table.handles(state, "Stop"), state


def test_the_graph_shows_every_flow_and_transition() -> None:
    result = CliRunner().invoke(hotline, ["flows", "--graph"])
    assert result.exit_code == 0, result.output
    assert result.output == markdown()
    blocks = result.output.split("### ")[1:]
    assert len(blocks) == len(FLOWS)
    for flow, block in zip(FLOWS, blocks, strict=True):
        assert block.startswith(f"{flow.name} ({flow.__name__}")
        assert "```mermaid\nstateDiagram-v2\n" in block
        assert f"    [*] --> {flow.initial.name}\n" in block
        lines = block.splitlines()
        table = flow.table
        assert table is not None
        for (state, event), targets in table.moves.items():
            for target in targets:
                arrow = [
                    line
                    for line in lines
                    if line.startswith(f"    {state.name} --> {target.name} : ")
                ]
                assert len(arrow) == 1 and event in arrow[0].split(" : ")[1].split(", "), (
                    flow.name,
                    state,
                    event,
                    target,
                )
            if not targets:
                described = [line for line in lines if line.startswith(f"    {state.name} : ")]
                assert len(described) == 1 and event in described[0].split(" : ")[1].split(", ")

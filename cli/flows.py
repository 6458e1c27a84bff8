"""`hotline flows`: the call flows' state machines, from their transition tables."""

from __future__ import annotations

import click

from ari_app.flows.graph import FLOWS, markdown

from . import output


@click.command()
@click.option("--graph", is_flag=True, help="Each flow's table as a Mermaid stateDiagram-v2.")
def flows(graph: bool) -> None:
    """The call flows and their states (ari_app/flows/: one transition table per flow).

    \b
    Example:
      hotline flows
      hotline flows --graph > flows.md
    """
    if graph:
        click.echo(markdown(), nl=False)
        return
    output.echo_table(
        ["flow", "class", "states", "moves"],
        [
            [
                flow.name,
                flow.__name__,
                [state.name for state in flow.table.states] if flow.table else [],
                sum(len(t) for t in flow.table.moves.values()) if flow.table else 0,
            ]
            for flow in FLOWS
        ],
        empty="no flows",
    )

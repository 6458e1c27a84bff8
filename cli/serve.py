"""`hotline serve`: the long-running process (ARI, call flows, panel)."""

from __future__ import annotations

import os
import sys

import click

from ari_app.app import run_serve
from ari_app.config import configure_logging, load_settings
from ari_app.workers import run_workers


@click.command()
@click.option("--grace", default=30.0, show_default=True, help="Seconds calls may finish on stop.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="HOTLINE_WORKERS",
    help="Worker processes (default: the number of CPUs); each registers its own Stasis "
    "app, and the dialplan spreads calls over them.",
)
def serve(grace: float, workers: int | None) -> None:
    """Connect to Asterisk (ARI) and PostgreSQL and run the hotlines until SIGTERM.

    \b
    Example:
      HOTLINE_ARI_URL=http://127.0.0.1:8088 HOTLINE_ARI_USER=hotline \\
      HOTLINE_ARI_PASSWORD=secret HOTLINE_DATABASE_URL=postgresql://... hotline serve
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    count = workers or os.cpu_count() or 1
    if count == 1:
        run_serve(settings, grace_s=grace)
        return
    sys.exit(run_workers(settings, count, grace))

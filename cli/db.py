"""`hotline db`: schema migrations."""

from __future__ import annotations

import click

from ari_app.config import database_url_from_env
from ari_app.db import migrate


@click.group()
def db() -> None:
    """Database schema.

    \b
    Example:
      HOTLINE_DATABASE_URL=postgresql://hotline@127.0.0.1/hotline hotline db upgrade
    """


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head).

    \b
    Example:
      hotline db upgrade
    """
    migrate.upgrade(database_url_from_env(), revision)
    click.echo(f"database at {migrate.current(database_url_from_env()).strip() or 'base'}")


@db.command()
def current() -> None:
    """Print the database's schema revision.

    \b
    Example:
      hotline db current
    """
    click.echo(migrate.current(database_url_from_env()).strip() or "base (empty database)")

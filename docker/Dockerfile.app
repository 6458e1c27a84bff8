# The Hotline application: migrates the database, then runs `hotline serve`.
# Build from the repository root: docker build -f docker/Dockerfile.app .
# Untested on the development machines (no Docker engine there).
FROM python:3.11-slim

WORKDIR /app
COPY setup.cfg pyproject.toml README.md alembic.ini ./
COPY ari_app/ ari_app/
COPY cli/ cli/
COPY migrations/ migrations/
RUN pip install --no-cache-dir . \
    && useradd --system --no-create-home --shell /usr/sbin/nologin hotline

# Installed (not editable), the package cannot find the checkout's migrations by itself.
ENV HOTLINE_MIGRATIONS_DIR=/app/migrations \
    HOTLINE_PANEL_LISTEN=0.0.0.0:8080 \
    PYTHONUNBUFFERED=1
USER hotline
EXPOSE 8080
ENTRYPOINT ["sh", "-c", "hotline db upgrade && exec hotline serve"]

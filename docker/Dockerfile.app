# The Hotline application: `hotline serve` (the default command), the `hotline` CLI, and
# `hotline db upgrade` (compose's one-shot `migrate` service runs it as the owner role).
# Build from the repository root: docker build -f docker/Dockerfile.app .
# BASE_IMAGE is pinned by tag and digest; the CI test builds on a local stand-in of the same
# tag (scripts/docker-base-images.sh) and passes it here.
ARG BASE_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3
FROM ${BASE_IMAGE}

# Only where pip must trust another CA bundle (e.g. a TLS-inspecting proxy): its path, with
# the bundle mounted into the build. Unset by default.
ARG PIP_CERT

WORKDIR /app
COPY setup.cfg pyproject.toml README.md alembic.ini ./
COPY ari_app/ ari_app/
COPY cli/ cli/
COPY migrations/ migrations/
RUN pip install --no-cache-dir --disable-pip-version-check . \
    && useradd --system --no-create-home --shell /usr/sbin/nologin hotline

# Installed (not editable), the package cannot find the checkout's migrations by itself.
ENV HOTLINE_MIGRATIONS_DIR=/app/migrations \
    PYTHONUNBUFFERED=1
USER hotline
EXPOSE 8080
CMD ["hotline", "serve"]

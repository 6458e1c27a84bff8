# Stand-in for python:3.11-slim on machines that cannot pull it (built by
# scripts/docker-base-images.sh on a debootstrapped Debian 12): Debian's python3 (3.11)
# with a virtualenv at /usr/local, so `python`, `pip` and installed scripts are on PATH in
# /usr/local/bin as in the official image.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates netbase tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local
ENV LANG=C.UTF-8
CMD ["python3"]

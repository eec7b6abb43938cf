# syntax=docker/dockerfile:1
# The pssync image: one entry point, `pssync`, for every role (docker-compose.yml runs
# `worker`, `gateway` and `db upgrade` from it).
#
#   docker build -t pssync:local .
#   docker run --rm pssync:local --help

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/pssync
WORKDIR /src
COPY . .
# A regular (not editable) install: the migrations ship as package data of `store`.
RUN /opt/pssync/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/pssync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --user-group --uid 10001 pssync
COPY --from=build /opt/pssync /opt/pssync
USER pssync
# Settings' `home` (.pssync, local state) resolves here; pssync.toml is read from here if mounted.
WORKDIR /home/pssync
ENTRYPOINT ["pssync"]
CMD ["--help"]

# The Tessera service image: flow_server, task_engine, federation_bridge, dashboard and the
# `tessera` CLI, started as `python -m <service>` (the chart and deploy/compose set the command).
# Build from the repository root:
#   docker build -f deploy/docker/service.Dockerfile -t tessera/service:0.1.0 .
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY libs ./libs
COPY services ./services
# fedalgo's C loops compile against GMP.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgmp-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/tessera \
 && /opt/tessera/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/tessera/bin/pip install --no-cache-dir '.[postgres]'

FROM python:3.12-slim-bookworm
# bubblewrap for STEP_RUNTIME=sandbox outside Kubernetes; in Kubernetes steps run as Jobs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap libgmp10 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 tessera \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/tessera --create-home tessera
COPY --from=build /opt/tessera /opt/tessera
ENV PATH=/opt/tessera/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/tessera
# Each service listens on BIND_HOST (the chart and compose set 0.0.0.0).
EXPOSE 9380 9370 9360 8080
CMD ["python", "-m", "flow_server"]

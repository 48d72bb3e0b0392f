# The step runtime image: what a Kubernetes step Job runs (`python -m task_engine.step` in the
# step's work dir). It holds the algorithms (fedalgo) and the step's side of the worker channel,
# and nothing that listens on the network. A job picks another image with its `runtime-image`
# argument; such an image must keep this entry point and run as a non-root uid.
# Build from the repository root:
#   docker build -f deploy/docker/runtime.Dockerfile -t tessera/runtime:0.1.0 .
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
 && /opt/tessera/bin/pip install --no-cache-dir .

FROM python:3.12-slim-bookworm
# A JRE for steps that compute on Spark (pyspark, a dependency, bundles Spark but not Java).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgmp10 openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 tessera \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent tessera
COPY --from=build /opt/tessera /opt/tessera
ENV PATH=/opt/tessera/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
ENTRYPOINT []
CMD ["python", "-m", "task_engine.step"]

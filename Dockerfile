# The wesfarm image: the worker, and the full `wesfarm` CLI (demo, bench and the
# examples included: the source tree is installed in place, at /app).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY engine ./engine
COPY worker ./worker
COPY producer ./producer
COPY bench ./bench
COPY examples ./examples
# engine._native is C: compile it, then drop the compiler from the image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install -e . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /home/wesfarm wesfarm \
    && mkdir -p /var/cache/wesfarm \
    && chown wesfarm /var/cache/wesfarm /app

USER wesfarm
ENV WESFARM_CACHE_DIR=/var/cache/wesfarm
EXPOSE 9464
CMD ["wesfarm", "worker", "--metrics-port", "9464"]

# The wesfarm worker image (also has the full `wesfarm` CLI).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml ./
COPY config ./config
COPY engine ./engine
COPY worker ./worker
COPY producer ./producer
COPY bench ./bench
# engine._native is C: compile it, then drop the compiler from the image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /home/wesfarm wesfarm \
    && mkdir -p /var/cache/wesfarm \
    && chown wesfarm /var/cache/wesfarm

USER wesfarm
ENV WESFARM_CACHE_DIR=/var/cache/wesfarm
EXPOSE 9464
CMD ["wesfarm", "worker", "--metrics-port", "9464"]

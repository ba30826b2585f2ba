# The pcaq image: both the API (granian) and the worker (celery) run from it; see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PCAQ_DATA_DIR=/var/lib/pcaq

WORKDIR /app
COPY pyproject.toml README* ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY cli ./cli
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/pcaq --create-home --shell /usr/sbin/nologin pcaq

USER pcaq
EXPOSE 8080
# The Procfile's web line; docker-compose.yml runs the worker line in the same image.
CMD ["granian", "--interface", "wsgi", "--host", "0.0.0.0", "--port", "8080", "--workers", "2", "--blocking-threads", "1", "--runtime-mode", "st", "--runtime-threads", "1", "--respawn-failed-workers", "--http1-buffer-size", "65536", "--factory", "pcaq.api.app:create_app"]

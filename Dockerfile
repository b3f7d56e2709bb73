# The gateway's one image: the web server by default; docker-compose.yml runs the same image as
# the migrate step, the Celery worker and Celery beat with other commands.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=gateway_project.settings \
    GATEWAY_DATA_DIR=/app/data

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app --shell /usr/sbin/nologin gateway

WORKDIR /app

# Dependencies first, so code changes reuse this layer.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY . .

# Static files are collected into the image (GATEWAY_DATA_DIR/static). The settings need secrets
# to load, so this step gets throwaway ones; the real ones come from the environment at run
# time, and with DEBUG off nothing is generated or kept in the image.
RUN SECRET_KEY=collectstatic-only \
    GATEWAY_KEY_HASH_SECRET=collectstatic-only \
    GATEWAY_ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    CELERY_BROKER_URL=memory:// \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /app/data/secrets \
    && mkdir -p /app/data/spool \
    && chown -R gateway:gateway /app/data

USER gateway

EXPOSE 8000

# Lifespan on: its shutdown drains the usage writer after the graceful period (keep that period
# equal to GATEWAY_SHUTDOWN_GRACE_SECONDS). No access log: proxy paths carry access keys. No
# proxy headers: the gateway decides client addresses itself (GATEWAY_CLIENT_IP_HEADER).
# Workers: WEB_CONCURRENCY (uvicorn's own variable), or --workers in compose.
CMD ["uvicorn", "gateway_project.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--lifespan", "on", "--loop", "uvloop", "--http", "httptools", "--no-access-log", \
     "--no-proxy-headers", "--timeout-graceful-shutdown", "30"]

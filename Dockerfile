# One image for web and worker: `gunicorn` by default, `dramatiq tasks` for workers.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MICROBLOG_ENV=production \
    MICROBLOG_BIND=0.0.0.0:8000

RUN useradd --create-home --uid 10001 microblog
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=microblog:microblog . .
USER microblog

EXPOSE 8000
# Apply migrations once per deployment (`docker compose run --rm web flask --app wsgi db upgrade`);
# the web command itself only serves.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]

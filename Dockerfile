# One image for web and worker: `gunicorn` by default, `dramatiq tasks` for workers.
# The minor-version tag tracks CPython's current 3.11 patch release (security fixes) on
# Debian 13; pin a digest at release time if you need byte-for-byte rebuilds.
FROM python:3.11-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MICROBLOG_ENV=production \
    MICROBLOG_BIND=0.0.0.0:8000

RUN useradd --create-home --uid 10001 microblog
WORKDIR /app
# The app's instance folder (the SQLite database when DATABASE_URL is unset) is its user's.
RUN install -d -o 10001 -g 10001 /app/instance

# Production's lock only: every package pinned and hash-checked, nothing for tests or `make run`.
COPY requirements.txt .
RUN pip install --require-hashes --no-deps -r requirements.txt

# .dockerignore keeps secrets (.env), tests, benchmarks and the development tools out.
COPY --chown=10001:10001 . .
USER 10001:10001
# The translation catalogs are compiled here, from the .po files (.mo files are not committed).
RUN pybabel compile --statistics -d microblog/translations

EXPOSE 8000
# Apply migrations once per deployment (the compose file's `migrate` service does);
# the web command itself only serves.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]

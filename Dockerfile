# Estimator's production image: gunicorn serving the app on port 8000, as a user without privileges.
# The schema is migrated by a separate one-shot run of the same image (see compose.yaml):
#   docker run --rm <image> flask --app estimator db upgrade
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_CONCURRENCY=4

# A fixed id, so volumes and orchestrators can grant it access; no login shell, no home to write to.
RUN useradd --no-log-init --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin estimator

WORKDIR /app

# Dependencies first: their layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code belongs to root and is only readable by the app; only the instance folder is its own.
COPY config.py run.py gunicorn.conf.py ./
COPY migrations/ migrations/
COPY templates/ templates/
COPY translations/ translations/
COPY estimator/ estimator/
# The message catalogs are compiled here, as the app cannot write them into a tree it only reads.
RUN pybabel compile --directory translations --statistics \
    && mkdir instance && chown estimator:estimator instance && chmod 0700 instance

# By number, so the platform can tell it is not root without reading the image's /etc/passwd.
USER 10001:10001

EXPOSE 8000

# /healthz answers without touching the database, so a database outage does not get every
# container restarted; urllib raises (exit 1) on anything but a 2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# gunicorn takes its number of worker processes from WEB_CONCURRENCY (default 4 above; about one
# per CPU core the container gets); each is a gevent worker holding thousands of connections, so
# a slow request or an open event stream does not hold up a whole process. The heartbeat files live in memory, not on the container's overlay file system.
# gunicorn also reads /app/gunicorn.conf.py: it raises the open-file limit and settles each gevent
# worker's garbage collector (the options here say the same as the file, and win over it).
# Exec form: gunicorn is PID 1 and gets the stop signal itself, finishing requests in flight.
CMD ["gunicorn", "--worker-class", "gevent", "--worker-connections", "10000", "--bind", "0.0.0.0:8000", "--worker-tmp-dir", "/dev/shm", "--access-logfile", "-", "estimator:create_app()"]

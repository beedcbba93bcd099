# rayledger: one container runs the embedded ledger (Ray + actors + gateway).
# The journal lives on the /data volume; keep it on durable storage.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 --user-group rayledger
WORKDIR /app
COPY pyproject.toml README.md rayledger_cli.py rayledger_seed.py ./
COPY ledger ./ledger
COPY journal ./journal
COPY api ./api
COPY actors ./actors
COPY gateway ./gateway
COPY benchmarks ./benchmarks
COPY client/rayledger ./client/rayledger
# Installs this package (with error tracking); its dependencies' bounds are in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[sentry]" \
    && mkdir /data && chown rayledger:rayledger /data

USER 10001:10001
VOLUME ["/data"]
# 8080: REST API; 8265: Ray dashboard (on 0.0.0.0, as the API: the container's 127.0.0.1
# is unreachable from its published ports)
EXPOSE 8080 8265
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["rayledger", "serve", "--data-dir", "/data", "--host", "0.0.0.0", "--dashboard-host", "0.0.0.0"]

# The shoppulse image: the worker (default command) and the traffic generator of docker-compose.yml.
FROM python:3.11.14-slim-bookworm

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shoppulse ./shoppulse
RUN pip install --no-cache-dir .

# The image has no git checkout: shoppulse_build_info{commit} comes from this build argument
# (docker-compose.yml passes the shell's SHOPPULSE_COMMIT; empty means "unknown").
ARG SHOPPULSE_COMMIT=""
ENV SHOPPULSE_COMMIT=${SHOPPULSE_COMMIT}

# Worker state (RocksDB, restored from Kafka changelogs) lives in /app/var/worker, the default data_dir.
RUN useradd --create-home --uid 10001 shoppulse && mkdir -p var/worker && chown -R shoppulse var
USER shoppulse
EXPOSE 9464
ENTRYPOINT ["shoppulse"]
CMD ["worker"]

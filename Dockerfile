# The stream-engine command in a container: `docker build -t stream-engine .`, then e.g.
#   docker run --rm stream-engine run configs/customer_onboarding.yaml --broker kafka:9092 \
#       --stage compliance --metrics-port 9464
# docker-compose.yml builds it for every engine service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The package first (its layer is rebuilt only when the code changes), without the dev extras.
COPY pyproject.toml README.md ./
COPY stream_engine ./stream_engine
RUN pip install . && rm -rf build stream_engine.egg-info

# The example pipelines with their samples and topic definitions (configs/topics/: a pipeline
# reads files in its own directory only), and the JSON Schemas of the topics.
COPY configs ./configs
COPY topics ./topics

# A non-root user. It owns /app itself (not the files in it) because faust keeps a
# <app-id>-data directory in the working directory.
RUN useradd --system --uid 10001 --gid 0 --home-dir /app --no-create-home stream-engine \
    && chown 10001:0 /app \
    && chmod 0775 /app
USER 10001

# Prometheus metrics (`run --metrics-port 9464`). The endpoint listens on 127.0.0.1 unless told
# otherwise; in a container that is unreachable from outside, so this image opens it
# (the variable beats runtime.metrics_host; --metrics-host beats both).
ENV STREAM_ENGINE_METRICS_HOST=0.0.0.0
EXPOSE 9464

ENTRYPOINT ["stream-engine"]
CMD ["--help"]

# The intentwatch image: `intentwatch worker` by default; the same image runs the gateway,
# the enforcer and every other subcommand (`docker run IMAGE gateway ...`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs (see .dockerignore): the wheel pins are in pyproject.toml.
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY streams ./streams
COPY benchmarks ./benchmarks
RUN pip install . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/intentwatch \
       --create-home intentwatch \
    && mkdir -p /var/lib/intentwatch/data /etc/intentwatch \
    && chown -R 10001:10001 /var/lib/intentwatch

USER 10001
WORKDIR /var/lib/intentwatch
# A container's web server must listen on every interface to be reached (the default,
# 127.0.0.1, is for a process on a shared host); data in the volume below.
ENV INTENTWATCH_WEB_BIND=0.0.0.0 \
    INTENTWATCH_DATA_DIR=/var/lib/intentwatch/data
VOLUME ["/var/lib/intentwatch/data"]
EXPOSE 6066

ENTRYPOINT ["intentwatch"]
CMD ["worker"]

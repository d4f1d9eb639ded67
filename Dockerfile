# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
COPY client ./client
# Both distributions: the server depends on sidecar-client (the shared wire protocol).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ./client .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin sidecar \
    && mkdir -p /run/sidecar && chown sidecar /run/sidecar
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV SIDECAR_SOCKET=/run/sidecar/sidecar.sock \
    SIDECAR_HTTP_PORT=8081 \
    PYTHONUNBUFFERED=1
EXPOSE 8081
# exec form: the sidecar is PID 1 and receives SIGTERM itself.
ENTRYPOINT ["sidecar", "run"]

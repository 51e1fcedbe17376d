# The load balancer image of the container tests (LB_IMAGE): Debian 12's nginx (1.22) and wget (the compose
# health check) on the local base image that scripts/test-container.sh builds, so no image registry is needed.
#   docker build --network host --build-arg BASE_IMAGE=resnet-base:bookworm -t resnet-lb:bookworm \
#     -f tests/container/lb.Dockerfile tests/container
ARG BASE_IMAGE=resnet-base:bookworm
FROM ${BASE_IMAGE}
# Versions follow the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx wget \
    && rm -rf /var/lib/apt/lists/*
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]

# The component image: every KFP component of the training pipeline runs from it
# (ghcr.io/kubeloop/kubeloop:<version>, defined once in kubeloop.components.core.image).
#
# Build with `make images` (see README.md). Offline by design: everything is installed from a
# wheelhouse in the build context, so the same file builds with a registry (BASE_IMAGE
# pulled) and without one (BASE_IMAGE made locally with debootstrap).
#
# CUDA variant: the wheelhouse carries the CUDA build of torch (its wheels bundle the CUDA
# libraries) and BASE_IMAGE may be a CUDA runtime image with Python 3.11; see README.md.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Folder of wheels inside the build context: deps/ holds the resolved dependency closure
# (torch included: the CPU build here, the CUDA build in the CUDA variant), project/ the
# kubeloop wheel. They are installed in two steps so a change to the project rebuilds a
# layer of a few MB, not the dependencies' GBs.
ARG WHEELHOUSE=wheels
COPY ${WHEELHOUSE}/deps /wheels
# A throwaway installer venv installs into a pip-less venv (pip --python): the final image
# gets no pip and installs nothing at run time. --no-deps: deps/ is already the closure.
RUN python3 -m venv /opt/installer \
 && python3 -m venv --without-pip /opt/kubeloop \
 && /opt/installer/bin/pip --python /opt/kubeloop/bin/python install \
        --no-cache-dir --no-index --no-deps /wheels/*.whl \
 && rm -rf /root/.cache

FROM build AS project
ARG WHEELHOUSE=wheels
COPY ${WHEELHOUSE}/project /project
# --root: only the project's files land under /staging, as one small layer for the image.
RUN /opt/installer/bin/pip --python /opt/kubeloop/bin/python install \
        --no-cache-dir --no-index --no-deps --root /staging /project/*.whl \
 && rm -rf /root/.cache

FROM ${BASE_IMAGE}
ARG VARIANT=cpu
LABEL org.opencontainers.image.source="https://github.com/kubeloop/kubeloop" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.kubeloop.variant="${VARIANT}"
# Fixed ids so Kubernetes securityContext (runAsUser/fsGroup 10001) matches the image.
RUN groupadd --gid 10001 kubeloop \
 && useradd --uid 10001 --gid 10001 --home-dir /home/kubeloop --create-home \
        --shell /usr/sbin/nologin kubeloop
COPY --from=build /opt/kubeloop /opt/kubeloop
COPY --from=project /staging/ /
# KFP runs `python3 -m kfp.dsl.executor_main`: the venv's python3 comes first on PATH.
ENV PATH=/opt/kubeloop/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    GX_ANALYTICS_ENABLED=false \
    BENTOML_DO_NOT_TRACK=true
LABEL org.opencontainers.image.title="kubeloop components"
USER 10001:10001
WORKDIR /home/kubeloop
CMD ["kubeloop", "--help"]

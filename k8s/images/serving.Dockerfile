# The serving image (ghcr.io/kubeloop/kubeloop-serving:<version>): one image, several
# entrypoints, chosen by the Deployment's command:
#   variant     bentoml serve kubeloop.serving.variant:ModelVariant --host 0.0.0.0 --port 3000
#   gateway     kubeloop serve --spec /etc/kubeloop/kubeloop.yaml --host 0.0.0.0 --port 3000
#   controller  kubeloop rollout controller --spec /etc/kubeloop/kubeloop.yaml
#   features    feast -c /app/feature_repo serve -h 0.0.0.0 -p 6566
#
# The build stages are the component image's, instruction for instruction, so building
# both shares their layers (and the runtime layers below) through the build cache.

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
RUN groupadd --gid 10001 kubeloop \
 && useradd --uid 10001 --gid 10001 --home-dir /home/kubeloop --create-home \
        --shell /usr/sbin/nologin kubeloop
COPY --from=build /opt/kubeloop /opt/kubeloop
COPY --from=project /staging/ /
ENV PATH=/opt/kubeloop/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    GX_ANALYTICS_ENABLED=false \
    BENTOML_DO_NOT_TRACK=true
# From here on the serving image differs from the component image.
# The Feast repo definitions (no data: the online store is Redis or a mounted path).
COPY --chown=0:0 feature_repo /app/feature_repo
ENV BENTOML_HOME=/var/lib/kubeloop/bentoml
LABEL org.opencontainers.image.title="kubeloop serving"
USER 10001:10001
WORKDIR /home/kubeloop
EXPOSE 3000 6566
CMD ["bentoml", "serve", "kubeloop.serving.variant:ModelVariant", "--host", "0.0.0.0", "--port", "3000"]

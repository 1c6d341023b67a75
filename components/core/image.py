"""The images, defined once: the platform image every component runs from and the serving
image (gateway, model variants, canary controller, feature server); tags are the package
version. `make images` builds both (k8s/images/)."""

from __future__ import annotations

from kubeloop import __version__

IMAGE_REPOSITORY = "ghcr.io/kubeloop/kubeloop"
PLATFORM_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
SERVING_IMAGE_REPOSITORY = "ghcr.io/kubeloop/kubeloop-serving"
SERVING_IMAGE = f"{SERVING_IMAGE_REPOSITORY}:{__version__}"

"""The one platform image every component runs from; its tag is the package version."""

from __future__ import annotations

from kubeloop import __version__

IMAGE_REPOSITORY = "ghcr.io/kubeloop/kubeloop"
PLATFORM_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"

"""kubeloop: one loop from raw data to a served, watched and retrained model.

The repository root is the ``kubeloop`` package: ``components/`` is ``kubeloop.components``,
``pipelines/`` is ``kubeloop.pipelines`` and ``serving/`` is ``kubeloop.serving``.
"""

from __future__ import annotations

__version__ = "0.1.0"

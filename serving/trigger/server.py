"""Build the trigger for a spec file and serve it with uvicorn (``kubeloop trigger serve``)."""

from __future__ import annotations

import logging
from pathlib import Path

from kubeloop.components.core.spec import load_spec
from kubeloop.serving.trigger.rollout_hook import default_rollout_starter
from kubeloop.serving.trigger.runners import KfpPipelineRunner, LocalPipelineRunner
from kubeloop.serving.trigger.trigger import RetrainTrigger

DEFAULT_PORT = 9095


def build_trigger(
    spec_path: str | Path,
    *,
    kfp_host: str | None = None,
    gateway_url: str | None = None,
    prometheus_url: str | None = None,
) -> RetrainTrigger:
    """The trigger for `spec_path`: runs retraining here through kfp.local (the runner of
    ``kubeloop pipeline run``), or on the Kubeflow Pipelines host `kfp_host`; a passed gate
    starts a canary through the gateway at `gateway_url` (default: the spec's serve address)
    analysed by Prometheus at `prometheus_url` (default: ``monitor.prometheus_url``)."""
    spec = load_spec(spec_path)
    runner = (
        KfpPipelineRunner(load_spec(spec_path, resolve=False), kfp_host)
        if kfp_host
        else LocalPipelineRunner(spec_path)
    )
    return RetrainTrigger(
        spec, runner, rollout=default_rollout_starter(gateway_url, prometheus_url)
    )


def serve(trigger: RetrainTrigger, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); the worker stops with the server."""
    import uvicorn

    from kubeloop.serving.trigger.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(create_app(trigger), host=host, port=port, log_level="info", workers=1)

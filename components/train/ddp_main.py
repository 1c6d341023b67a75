"""torchrun entry point: `python -m kubeloop.components.train.ddp_main ARGS_JSON`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.train import distributed, trainer
    from kubeloop.components.train.params import resolve_params

    args = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    spec = spec_from_json(args["spec_json"])
    device, _ = trainer.resolve_device(spec)
    ctx = distributed.current(use_cuda=device.type == "cuda")
    try:
        trainer.fit(
            spec,
            args["train_path"],
            args["val_path"],
            args["model_dir"],
            resolve_params(spec, args["params"], args["epochs"]),
            tensorboard_dir=args["tensorboard_dir"],
            resume=args.get("resume", False),
            ctx=ctx,
        )
    finally:
        distributed.finish(ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""torchrun entry point for the distributed tests: ``pyfdc``'s CLI with one rank killed mid-run.

``PYFDC_TEST_KILL_RANK`` (default: none) dies with ``os._exit(9)`` — no cleanup, no exception, like a
SIGKILL — when its validation pass of epoch ``PYFDC_TEST_KILL_EPOCH`` starts, i.e. after that epoch's
optimiser steps and before its state is saved.
"""
from __future__ import annotations

import os
import sys
from typing import Any


def main() -> int:
    from pyfdc import cli
    from pyfdc.training import trainer as training

    kill_rank = os.environ.get("PYFDC_TEST_KILL_RANK")
    kill_epoch = int(os.environ.get("PYFDC_TEST_KILL_EPOCH", "0"))
    real = training._val_loss
    calls = {"n": 0}

    def val_loss(*args: Any, **kwargs: Any) -> float:
        calls["n"] += 1
        if kill_rank is not None and os.environ.get("RANK") == kill_rank and calls["n"] == kill_epoch:
            os._exit(9)
        return real(*args, **kwargs)

    training._val_loss = val_loss
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""stpipe's entry point (``stpipe.steps``): the steps daskod provides, by class name.

Nothing is imported here, so ``strun --list`` and stpipe's registry stay fast and work
without ``jwst`` installed (the step itself needs it: ``pip install 'daskod[jwst]'``).
"""

from __future__ import annotations

__all__ = ["get_steps"]


def get_steps() -> list[tuple[str, str, bool]]:
    """``(class name, alias, is_pipeline)`` of every stpipe step in daskod."""
    return [("daskod.jwst_step.DaskodOutlierDetectionStep", "daskod_outlier_detection", False)]

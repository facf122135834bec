"""The diffusion core: spectral tokens (:mod:`~pyfdc.core.spectral`), the VP-SDE (:mod:`~pyfdc.core.sde`), the
score network (:mod:`~pyfdc.core.score_net`), the per-model data transforms (token scaling, pinned coordinates,
support bounds, token moments), the model that ties them together (:mod:`~pyfdc.core.model`) and its
checkpoints (:mod:`~pyfdc.core.checkpoint`). Nothing here samples or trains."""

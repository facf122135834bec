"""Measuring quality and speed: the C2ST yardstick (:mod:`~pyfdc.evaluation.quality`), Wasserstein metrics,
the field's discriminative/predictive scores, the speed–quality front (:mod:`~pyfdc.evaluation.front`) and
plots. See ``docs/QUALITY.md``."""

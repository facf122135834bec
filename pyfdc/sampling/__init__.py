"""Sampling: reverse-time solvers as short functions over any ε-function (:mod:`~pyfdc.sampling.solvers`), the
one sampling loop that runs them with or without a cache (:class:`~pyfdc.sampling.sampler.Sampler`) and the
statistics every run reports (:mod:`~pyfdc.sampling.stats`)."""

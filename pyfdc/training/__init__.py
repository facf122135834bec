"""Training by denoising score matching: the recipe (:mod:`~pyfdc.training.config`), the data statistics fitted
once (:mod:`~pyfdc.training.data_stats`), the loop (:mod:`~pyfdc.training.loop`), the DDP plumbing
(:mod:`~pyfdc.training.ddp`), resumable state (:mod:`~pyfdc.training.state`) and the entry point
:func:`pyfdc.training.trainer.train`."""

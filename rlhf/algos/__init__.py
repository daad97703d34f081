"""Training algorithms; each module exposes ``Settings`` (its typed config) and ``train(job, settings)``."""

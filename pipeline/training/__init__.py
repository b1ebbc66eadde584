"""Training of the land-cover models: data sampling, losses, loop, checkpoints, baselines.

Entry points: :func:`pipeline.training.trainer.train_model` (the train stage) and
:func:`pipeline.training.options.parse_train_options`. Loading a trained model and predicting
with it is :mod:`pipeline.inference`; the class rows are
:class:`pipeline.reference.classes.LandCoverClass`. This package imports nothing itself, so
that :mod:`pipeline.inference.loading` can read the model files without loading the trainer.
"""

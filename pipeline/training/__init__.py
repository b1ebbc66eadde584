"""Training of the land-cover models: data sampling, losses, loop, checkpoints, baselines.

Entry points: :func:`pipeline.training.trainer.train_model` (the train stage) and
:func:`pipeline.training.options.parse_train_options`. Loading a trained model and predicting
with it is :mod:`pipeline.inference`, which training may use (a relearning model is trained on
a first-stage model's predictions) but which never imports training: the trained-model folder
format both sides share (file names, reading checkpoints, the scikit-learn baseline wrapper) is
:mod:`pipeline.models.files` and :mod:`pipeline.models.baseline`. The class rows are
:class:`pipeline.reference.classes.LandCoverClass`. This package imports nothing itself.
"""

"""Running trained models: load them, predict full images, build the relearning inputs.

``loading``: a trained model from its folder (:func:`~pipeline.inference.loading.load_model`)
and its forward pass on a batch of windows; ``prediction``: the tiled full-image prediction of
one map date (probabilities, class ids, confidence) the stage :mod:`pipeline.predict` writes;
``relearning``: the first-stage probabilities that extend the features of a relearning model,
for its training (:mod:`pipeline.training.relearning`) and its maps alike.

Imports flow one way: the train side (:mod:`pipeline.training`) may use ``loading`` and
``relearning`` but never ``prediction`` nor the stage :mod:`pipeline.predict`, and this package
never imports :mod:`pipeline.training`; shared pieces (:mod:`pipeline.models`, the model folder
format :mod:`pipeline.models.files` and :mod:`pipeline.models.baseline`,
:mod:`pipeline.models.device`, :mod:`pipeline.reference.classes`) sit below both
(``tests/test_import_layers.py``). This package imports nothing itself.
"""

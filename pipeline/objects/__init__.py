"""Image objects: segments of one date's PCA composite and object-based voting of a map.

:mod:`.options` holds the settings (segmentation, vote method, the voting keys of the
``predict`` config section; light, no image libraries), :mod:`.segments` the segmentation
(used by object-based relearning and voting), :mod:`.voting` the votes and the segment
polygons. The stage entry point is :mod:`pipeline.vote`.
"""

"""Train stage: ``python -m pipeline.train --features F --labels L --out DIR --options JSON``.

Trains one model (semi_convlstm, convlstm, pixel_lstm, rf, svm, unet, unet_stack, unet_convlstm,
optionally relearning on a first-stage model's probabilities; see
:class:`pipeline.training.options.TrainOptions` for every option) and writes
``DIR/model.pt`` (or ``model.joblib``), ``checkpoint.pt``, ``metrics.csv``,
``model_card.json``. Rerunning after an interruption resumes from ``checkpoint.pt``. The test
blocks of the labels' test design (``labels.zarr`` ``split``; with ``--fold K`` the blocks of
cross-validation fold K) and their buffer are never trained or validated on.
Exit status 2 on a user-fixable problem (bad option, unusable data).

Data-parallel training (torch DDP; gloo on CPU, nccl with one GPU per process):
``torchrun --standalone --nproc_per_node N -m pipeline.train ...`` (same arguments; the
global batch ``batch_size`` must be divisible by N; ``--threads`` is shared by the N
processes). See :mod:`pipeline.training.distributed`.
"""

from __future__ import annotations

import logging

from pipeline.cli import base_parser, run_stage
from pipeline.raster.zarr_io import open_store
from pipeline.training.distributed import launched_world
from pipeline.training.options import parse_train_options
from pipeline.training.trainer import train_model

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and train; returns the process exit status."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="features.zarr store")
    parser.add_argument("--labels", required=True, help="labels.zarr store")
    parser.add_argument("--out", required=True, help="output folder results/{aoi}/models/{model}")
    parser.add_argument("--options", default="{}", help="train options as one JSON object")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch, scikit-learn)")
    parser.add_argument("--base-model", default=None,
                        help="first-stage model folder of a relearning model (default: ../<relearning_base>)")
    parser.add_argument("--fold", type=int, default=None,
                        help="spatial cross-validation: hold out fold K of the labels' test design (its blocks "
                             "are the test set) instead of the design's test blocks")
    args = parser.parse_args(argv)

    def work() -> None:
        options = parse_train_options(args.options)
        features = open_store(args.features, required=("features",))
        labels = open_store(args.labels, required=("labels",))
        result = train_model(features, labels, args.out, options, threads=args.threads,
                             sources={"features": str(args.features), "labels": str(args.labels)},
                             base_model=args.base_model, fold=args.fold)
        if launched_world().is_main:
            log.info("trained %s: best epoch %d, metrics %s -> %s", options.model, result.best_epoch,
                     {k: v for k, v in result.metrics.items() if k.startswith("val_")}, result.model_path)

    return run_stage(work, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())

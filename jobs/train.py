"""spark-submit jobs/train.py --data URI --model-out URI: fit featurizer + classifier."""
from __future__ import annotations

import argparse
import json

from pipeline import config
from pipeline.runtime.cli import add_cv, add_precision, base_parser, run_job
from pipeline.runtime.session import get_session
from pipeline.featurizer.summary import TrainConfig
from pipeline.featurizer.training import train
from pipeline.report.crossval import brief


def _reg_grid(text: str) -> tuple[tuple[float, float], ...]:
    """``0.01:0.3,0.05:0.3`` as ((0.01, 0.3), (0.05, 0.3))."""
    try:
        grid = tuple((float(reg), float(net)) for reg, net in
                     (pair.split(":") for pair in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected REG:NET[,REG:NET...], got {text!r}") from None
    if any(reg < 0 or not 0 <= net <= 1 for reg, net in grid):
        raise argparse.ArgumentTypeError(f"regParam must be >= 0 and elasticNet in [0, 1]: {text!r}")
    return grid


def parser() -> argparse.ArgumentParser:
    p = base_parser("Train DeepImageFeaturizer + LogisticRegression on a chest_xray tree's train "
                    "split; the threshold is set on a patient-grouped validation part of it.")
    p.add_argument("--data", required=True, help="URI of the chest_xray tree (file:// or hdfs://)")
    p.add_argument("--model-out", required=True, help="URI to save the PipelineModel to")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet', 'none' (random init, seeded) or a weights/.keras file URI")
    p.add_argument("--model-name", default=config.DEFAULT_MODEL, help="named CNN backbone")
    p.add_argument("--pooling", default=config.DEFAULT_POOLING, choices=("avg", "max", "none"))
    p.add_argument("--features-cache", default=None,
                   help="Parquet URI for the features; a re-fit on the same images reuses them")
    p.add_argument("--reader", default=config.DEFAULT_READER, choices=config.READERS)
    p.add_argument("--batch-size", type=int, default=config.DEFAULT_BATCH_SIZE)
    p.add_argument("--max-iter", type=int, default=config.LR_MAX_ITER)
    p.add_argument("--reg-param", type=float, default=config.LR_REG_PARAM)
    p.add_argument("--elastic-net", type=float, default=config.LR_ELASTIC_NET)
    p.add_argument("--target-sensitivity", type=float, default=config.TARGET_SENSITIVITY)
    p.add_argument("--val-fraction", type=float, default=config.VALIDATION_FRACTION)
    p.add_argument("--seed", type=int, default=config.SEED)
    add_cv(p, "model")
    p.add_argument("--model-file", default=None,
                   help="URI of a fine-tuned .keras model (jobs/finetune.py's model.keras) "
                        "whose penultimate layer gives the features; replaces --model-name "
                        "and --weights")
    p.add_argument("--clahe", action="store_true",
                   help="equalise each film's contrast (CLAHE, pipeline.data.preprocess) before "
                        "the network; stored with the model, so evaluate and predict do the same")
    p.add_argument("--input-size", type=int, default=0, metavar="PX",
                   help="build the named backbone for PX-pixel films instead of its own size "
                        "(e.g. 224 for InceptionV3 on 224 px films; at least 75 for it)")
    p.add_argument("--featurizer-seed", type=int, default=None,
                   help="seed of a random-init backbone (default: --seed, which also draws the "
                        "validation part and the folds); members of a seed ensemble differ here")
    p.add_argument("--reg-grid", type=_reg_grid, default=(), metavar="REG:NET,...",
                   help="regParam:elasticNet candidates, e.g. 0.01:0.3,0.05:0.3,0.2:0.3; each fit "
                        "(each --cv fold's and the final one) takes the best ROC AUC on its own "
                        "validation part (replaces --reg-param and --elastic-net)")
    add_precision(p, config.PRECISION)
    p.add_argument("--draft-decode", action=argparse.BooleanOptionalAction,
                   default=config.DRAFT_DECODE,
                   help="decode JPEGs at least twice the input size at a reduced scale (faster "
                        "on full-resolution films, pixels differ slightly from a full decode)")
    return p


def main(args: argparse.Namespace) -> None:
    spark = get_session("xray-train", args.master, args.verbose)
    summary = train(spark, TrainConfig(
        data=args.data, model_out=args.model_out, model_name=args.model_name, weights=args.weights,
        pooling=args.pooling, batch_size=args.batch_size, reader=args.reader,
        features_cache=args.features_cache, max_iter=args.max_iter, reg_param=args.reg_param,
        elastic_net=args.elastic_net, target_sensitivity=args.target_sensitivity,
        val_fraction=args.val_fraction, seed=args.seed, precision=args.precision,
        draft_decode=args.draft_decode, cv_folds=args.cv, model_file=args.model_file,
        clahe=args.clahe, input_size=args.input_size, featurizer_seed=args.featurizer_seed,
        reg_grid=args.reg_grid)).summary
    shown = ("sensitivity", "specificity", "roc_auc")
    result = {"model": args.model_out, "threshold": summary.threshold,
              "validation": {k: summary.validation_metrics[k] for k in shown},
              **({"regularisation": summary.regularisation} if summary.regularisation else {})}
    if summary.cross_validation:
        result["cross_validation"] = brief(summary.cross_validation)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_job(main, parser())

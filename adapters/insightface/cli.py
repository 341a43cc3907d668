"""``facenas data ...`` (pack, pairs, synth, info) and ``facenas eval`` commands."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from facenas.errors import DataFormatError, FacenasError
from facenas.utils.io import emit_json

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="pack, inspect and generate InsightFace datasets (.rec/.idx, .bin)")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    p = dsub.add_parser("pack", help="pack an image folder (one sub-folder per identity) into train.rec/.idx/property")
    p.add_argument("image_dir")
    p.add_argument("out_dir")
    p.add_argument("--no-check", action="store_true", help="do not decode every image while packing (faster)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(handler=_pack)

    p = dsub.add_parser("pairs", help="build a .bin verification set from an LFW-style pairs.txt and an image root")
    p.add_argument("pairs_txt")
    p.add_argument("image_root")
    p.add_argument("out_bin")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this square size (re-encodes JPEG)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_pairs)

    p = dsub.add_parser("synth", help="write synthetic identities as train.rec/.idx/property + val.bin")
    p.add_argument("out_dir")
    p.add_argument("--identities", type=int, default=100)
    p.add_argument("--images-per-identity", type=int, default=20)
    p.add_argument("--val-identities", type=int, default=50)
    p.add_argument("--val-pairs", type=int, default=600)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_synth)
    _add_scale_flags(p)

    p = dsub.add_parser("info", help="describe a .rec folder, an image folder or a .bin (decodes every image)")
    p.add_argument("path")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_info)

    e = sub.add_parser("eval", help="verification accuracy of a model on .bin sets (10-fold, TAR@FAR, AUC, EER)")
    e.add_argument("--model", required=True, help="ONNX file, facenas checkpoint, or arcface_torch model.pt (with --network)")
    e.add_argument("--bin", action="append", required=True, dest="bins", help=".bin verification set (repeatable)")
    e.add_argument("--network", default=None, help="backbone name for an arcface_torch state dict (e.g. r50, mbf)")
    e.add_argument("--image-size", type=int, default=None, help="resize pairs to this size (default: the model's input)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--no-flip", action="store_true", help="disable flip-test")
    e.add_argument("--threads", type=int, default=None, help="torch / onnxruntime threads")
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=_eval)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


def _pack(args) -> int:
    from facenas.adapters.insightface.pack import pack_image_folder

    _print(pack_image_folder(args.image_dir, args.out_dir, check=not args.no_check), args.json)
    return 0


def _pairs(args) -> int:
    from facenas.adapters.insightface.binset import build_bin_from_pairs

    info = build_bin_from_pairs(args.pairs_txt, args.image_root, args.out_bin, args.image_size)
    info["out"] = str(args.out_bin)
    _print(info, args.json)
    return 0


def _synth(args) -> int:
    from facenas.adapters.insightface.synthetic import SyntheticConfig, write_synthetic_dataset

    cfg = SyntheticConfig(args.identities, args.images_per_identity, args.val_identities, args.val_pairs,
                          args.image_size, args.seed)
    _print(write_synthetic_dataset(args.out_dir, cfg), args.json)
    return 0


def _add_scale_flags(p: argparse.ArgumentParser) -> None:
    """``synth --shape ms1mv3`` / ``--total-images N``: a RecordIO of a large set's shape with tiny reused JPEGs."""
    g = p.add_argument_group("scale (a large set's shape, tiny reused JPEGs, no val.bin)")
    g.add_argument("--shape", help="a published set's sizes: ms1mv2, ms1mv3, glint360k, webface4m")
    g.add_argument("--total-images", type=int, help="images in all (with --identities), instead of --images-per-identity")
    g.add_argument("--jpeg-size", type=int, default=16, help="side of the tiny JPEGs (default 16)")
    g.add_argument("--distinct-jpegs", type=int, default=1024, help="encoded images the records reuse (default 1024)")
    g.add_argument("--jpeg-pool", default="fields", choices=["fields", "faces"],
                   help="fields: smallest files; faces: noisy cartoon faces, decode cost close to real faces")
    p.set_defaults(handler=_synth_or_scale)


def _synth_or_scale(args) -> int:
    if args.shape is None and args.total_images is None:
        return _synth(args)
    from facenas.adapters.insightface.synthetic_scale import ScaleShape, shape_by_name, write_scale_dataset

    images, identities = shape_by_name(args.shape) if args.shape else (args.total_images, args.identities)
    shape = ScaleShape(images, identities, args.jpeg_size, args.distinct_jpegs, args.seed, args.jpeg_pool)
    _print(write_scale_dataset(args.out_dir, shape), args.json)
    return 0


def _info(args) -> int:
    path = Path(args.path)
    if path.suffix == ".bin" or path.is_file():
        from facenas.adapters.insightface.binset import load_bin, read_bin_raw

        if args.no_decode:
            images, same = read_bin_raw(path)
            result = {"path": str(path), "format": "bin", "pairs": int(same.size), "same": int(same.sum()),
                      "different": int((~same).sum()), "images": len(images), "all_decoded": False}
        else:
            vs = load_bin(path)
            result = {"path": str(path), "format": "bin", "pairs": vs.num_pairs, "same": int(vs.issame.sum()),
                      "different": int((~vs.issame).sum()), "images": int(vs.images.shape[0]),
                      "image_size": list(vs.image_size), "all_decoded": True}
    else:
        from facenas.adapters.insightface.dataset import dataset_info

        if not path.exists():
            raise DataFormatError(str(path), "no such file or folder")
        result = dataset_info(path, check_decode=not args.no_decode)
    _print(result, args.json)
    return 0


def load_model_for_eval(model_path: str, network: str | None):
    """A torch module (facenas checkpoint / arcface_torch state dict / ONNX file) and its input size."""
    from facenas.adapters.insightface.backbones import load_backbone

    if not os.path.isfile(model_path):
        raise DataFormatError(model_path, "no such model file")
    model = load_backbone(model_path, network=network)
    size = getattr(model, "input_size", None) or getattr(model, "facenas_checkpoint", {}).get("input_size")
    if isinstance(size, int):
        size = (size, size)
    return model, (tuple(int(v) for v in size) if size else None)


def _eval(args) -> int:
    import torch

    from facenas.adapters.insightface.evaluate import VerificationEvaluator

    if args.threads:
        torch.set_num_threads(args.threads)
    model, input_size = load_model_for_eval(args.model, args.network)
    image_size = args.image_size or (input_size[0] if input_size and input_size[0] != 112 else None)
    for b in args.bins:
        if not os.path.isfile(b):
            raise FacenasError(f"--bin {b}: no such file")
    evaluator = VerificationEvaluator(list(args.bins), batch_size=args.batch_size, flip=not args.no_flip,
                                      image_size=image_size)
    metrics = evaluator(model)
    result = {"model": args.model, "flip": not args.no_flip, "image_size": image_size or 112, **metrics}
    _print(result, args.json)
    return 0

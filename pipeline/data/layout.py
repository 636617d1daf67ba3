"""Relative paths of the ImageNet release layouts (DESIGN §3), in one place."""

from __future__ import annotations

DET_TRAIN_IMAGES = "ILSVRC2013_DET_train"
DET_TRAIN_BOXES = "ILSVRC2013_DET_bbox_train"
DET_VAL_IMAGES = "ILSVRC2013_DET_val"
DET_VAL_BOXES = "ILSVRC2013_DET_bbox_val"
DEVKIT_DATA = "devkit/data"
MAP_DET = f"{DEVKIT_DATA}/map_det.txt"
META_DET = f"{DEVKIT_DATA}/meta_det.mat"
CLS_TRAIN = "CLS/train"
CLS_TARS = "CLS/tars"  # one <wnid>.tar per synset, as in the full-ImageNet release
WORDS = "words.txt"
IS_A = "wordnet.is_a.txt"

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SPLITS = ("det-train", "val", "val1", "val2")


def split_file(name: str) -> str:
    return f"{DEVKIT_DATA}/{name}.txt"

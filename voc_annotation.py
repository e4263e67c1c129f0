"""VOC dataset -> ImageSets split and the training lists ``2007_train.txt`` / ``2007_val.txt``.

Upstream behaviour and names, with a seeded split, image paths that may contain spaces, images
in any of utils/voc.py's IMAGE_EXTENSIONS, and every XML and image checked by ``utils.dataset_check`` (problems are
reported once each, fixable boxes clipped, unusable objects and images skipped).
Boxes are written as in the XML (VOC's 1-based inclusive corners, as upstream does).
"""
import sys

from utils.config import resolve_config
# The list builders live in utils/training_lists.py (train.py builds missing lists with them too);
# they are imported here under upstream's script so that existing callers keep working.
from utils.training_lists import build_training_lists, split_image_sets  # noqa: F401
from utils.voc import find_image, read_image_set, voc_folder  # noqa: F401

annotation_mode = 0                               # 0: split + lists, 1: only the ImageSets split, 2: only the lists
classes_path = 'model_data/sample_classes.txt'    # class names, one per line; their order gives the class ids
trainval_percent = 0.9                            # share of all images in trainval (the rest is test)
train_percent = 0.9                               # share of trainval in train (the rest is val)
VOCdevkit_path = 'VOCdevkit'                      # folder holding VOC2007/Annotations, JPEGImages, ImageSets
VOCdevkit_sets = [('2007', 'train'), ('2007', 'val')]  # (year, image set) pairs to write training lists for
lists_dir = '.'                                   # where the training lists '<year>_<set>.txt' are written
seed = 0                                          # seed of the random trainval/train split


def main(config):
    if config["annotation_mode"] not in (0, 1, 2):
        raise SystemExit(f"error: annotation_mode must be 0, 1 or 2, got {config['annotation_mode']!r}")
    if config["annotation_mode"] in (0, 1):
        print("Generating the ImageSets split.")
        split = split_image_sets(config["VOCdevkit_path"], config["trainval_percent"], config["train_percent"],
                                 config["seed"])
        print(", ".join(f"{name}: {len(ids)}" for name, ids in split.items()))
    if config["annotation_mode"] in (0, 2):
        print("Generating the training lists.")
        build_training_lists(config["VOCdevkit_path"], config["classes_path"], config["VOCdevkit_sets"],
                             config["lists_dir"])


if __name__ == "__main__":
    main(resolve_config(globals(), sys.argv[1:]))

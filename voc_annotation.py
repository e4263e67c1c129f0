"""Dataset -> split and the training lists ``2007_train.txt`` / ``2007_val.txt`` (and ``2007_test.txt``).

With the defaults, upstream's behaviour and names: ``VOCdevkit/VOC2007`` is split into ``ImageSets/Main`` (seeded)
and the lists are written from it, with image paths that may contain spaces, images in any of utils/data/voc.py's
IMAGE_EXTENSIONS, and every XML and image checked by ``utils.data.dataset_check`` (problems reported once each, fixable
boxes clipped, unusable objects and images skipped). Boxes are written as in the XML (VOC's 1-based corners).

``--dataset_path`` reads a dataset elsewhere, in ``--dataset_format`` voc (a folder with Annotations/, JPEGImages/
and maybe its own ImageSets/Main), yolo (images/ + labels/ + data.yaml or classes.txt), coco (an instances JSON) or
yaml (an ultralytics / Roboflow data.yaml, e.g. train/images + valid/images): ``annotation_mode 0`` splits it with
the seed, ``2`` keeps the dataset's own split; the dataset's folder is never written to. The lists go to
``lists_dir`` with train, val and test, and for yolo / coco / yaml the class names to
``<lists_dir>/dataset_classes.txt``.
"""
import os
import sys

from utils.config import resolve_config
from utils.data.datasets import FORMATS, read_dataset, write_class_file, write_dataset_lists
from utils.errors import UserError, run_entry
# The list builders live in utils/data/training_lists.py (train.py builds missing lists with them too);
# they are imported here under upstream's script so that existing callers keep working.
from utils.data.training_lists import build_training_lists, split_image_sets  # noqa: F401
from utils.data.training_lists import seeded_split
from utils.utils import get_classes
from utils.data.voc import find_image, read_image_set, voc_folder  # noqa: F401

# (command, what it does): --help shows them above the settings.
_EXAMPLES = (
    ("python voc_annotation.py",
     "split VOCdevkit/VOC2007 with the seed and write 2007_train.txt and 2007_val.txt (upstream's behaviour)"),
    ("python voc_annotation.py --dataset_path my_set/data.yaml --dataset_format yaml --lists_dir my_lists",
     "the lists of a data.yaml dataset (ultralytics / Roboflow), split with the seed, into my_lists/"),
    ("python voc_annotation.py --dataset_path my_yolo --dataset_format yolo --annotation_mode 2",
     "the lists of a YOLO folder, keeping its own train / val split"),
)

# --- dataset ---
VOCdevkit_path = 'VOCdevkit'                      # folder holding VOC2007/Annotations, JPEGImages, ImageSets
dataset_path = ''                                 # '' = VOCdevkit_path/VOC2007 (upstream); else a VOC or YOLO folder or a COCO JSON
dataset_format = 'voc'                            # with dataset_path: 'voc', 'yolo', 'coco' or 'yaml' (a data.yaml)
image_dir = ''                                    # COCO: folder of the images; '' = found beside the JSON
classes_path = 'model_data/sample_classes.txt'    # class names, one per line; their order gives the class ids
# --- split ---
annotation_mode = 0                               # 0: split + lists, 1: only the ImageSets split, 2: only the lists
trainval_percent = 0.9                            # share of all images in trainval (the rest is test)
train_percent = 0.9                               # share of trainval in train (the rest is val)
seed = 0                                          # seed of the random trainval/train split
# --- output ---
lists_dir = '.'                                   # where the training lists '<year>_<set>.txt' are written
VOCdevkit_sets = [('2007', 'train'), ('2007', 'val')]  # (year, image set) pairs to write training lists for

# What a value given on the command line must be, beyond the type of its default (utils/config.py);
# VOCdevkit_sets takes any number of (year, image set) pairs.
_LIMITS = {"annotation_mode": "0..2", "trainval_percent": "0..1", "train_percent": "0..1",
           "VOCdevkit_sets": "any length", "dataset_format": FORMATS}


def dataset_split(config, dataset):
    """The split to write: the dataset's own (``annotation_mode 2``) or a seeded one (``0``)."""
    if config["annotation_mode"] == 2:
        if not dataset.split:
            raise UserError(f"{config['dataset_path']} has no split of its own (VOC: ImageSets/Main/*.txt, "
                             f"YOLO: images/train, images/val); use annotation_mode 0 to split it with the seed")
        return dataset.split
    if dataset.split:
        print(f"Splitting anew with seed {config['seed']}; annotation_mode 2 keeps the dataset's own split "
              f"({', '.join(f'{k}: {len(v)}' for k, v in dataset.split.items())}).")
    return seeded_split([r.image_id for r in dataset.records], config["trainval_percent"], config["train_percent"],
                        config["seed"])


def convert_dataset(config):
    """Training lists (train, val, test) from a dataset at ``dataset_path`` in ``dataset_format``."""
    if config["dataset_format"] not in FORMATS:
        raise UserError(f"dataset_format must be one of {', '.join(FORMATS)}, got {config['dataset_format']!r}")
    if config["annotation_mode"] == 1:
        raise UserError("annotation_mode 1 writes VOCdevkit's ImageSets; with --dataset_path use 0 (seeded "
                         "split) or 2 (the dataset's own split)")
    class_names = get_classes(config["classes_path"])[0] if config["dataset_format"] == "voc" else None
    dataset = read_dataset(config["dataset_format"], config["dataset_path"], class_names, config["image_dir"])
    split = dataset_split(config, dataset)
    print(", ".join(f"{name}: {len(split.get(name, []))}" for name in ("train", "val", "test")))
    write_dataset_lists(dataset, split, config["lists_dir"])
    classes_path = config["classes_path"]
    if config["dataset_format"] != "voc":
        classes_path = write_class_file(dataset.class_names, os.path.join(config["lists_dir"], "dataset_classes.txt"))
        print(f"Class names ({len(dataset.class_names)}) written to {classes_path}")
    lists = {name: os.path.join(config["lists_dir"], f"2007_{name}.txt") for name in ("train", "val")}
    print(train_command(classes_path, lists))


def train_command(classes_path, lists):
    """The next step, with how long it takes: train.py's auto settings fit a CPU run to its time budget."""
    import train

    return (f"Train with: python train.py --classes_path {classes_path} --train_annotation_path {lists['train']} "
            f"--val_annotation_path {lists['val']}\n(on a CPU it trains the quick-start model for about "
            f"{train.time_budget_min} min, fitted to this data; --time_budget_min changes that; on a GPU the full model)")


def main(config):
    if config["annotation_mode"] not in (0, 1, 2):
        raise UserError(f"annotation_mode must be 0, 1 or 2, got {config['annotation_mode']!r}")
    if config["dataset_path"] or config["dataset_format"] != "voc":
        if not config["dataset_path"]:
            raise UserError(f"dataset_format {config['dataset_format']!r} needs --dataset_path")
        return convert_dataset(config)
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
    run_entry(lambda: main(resolve_config(globals(), sys.argv[1:])))

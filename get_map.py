"""Evaluate a trained YOLOv4 on a VOC image set (upstream's get_map.py, with this project's metrics).

map_mode 0 detects on the image set and scores the detections in memory with utils/metrics/evaluation.py, the
evaluation training uses (same preprocessing, float boxes, XML ground truth with difficult objects ignored), so
``--image_set val`` reports the mAP the training log shows for the same weights. It also writes upstream's
``map_out/detection-results/`` and ``ground-truth/`` text files (integer boxes) for other tools. 1 and 2 write
only one side; 3 scores existing text files (VOC mAP@0.5 headline), 4 the same with the COCO-style mAP@[.5:.95]
headline (no pycocotools). Scoring writes ``metrics.json``, per-class PR curves, an AP bar chart and a confusion
matrix, and prints a table. Any ``YOLO._defaults`` key can be overridden too:
    python get_map.py --model_path logs/best_epoch_weights.pth --input_shape "[320, 320]"
"""
import json
import os
import sys

from utils.config import command_line_names, help_from_source, resolve_config

if __name__ == "__main__":      # --help read from this file and yolo.py, before the imports below load torch
    help_from_source(__file__, sys.argv[1:], defaults_of=[("yolo.py", "YOLO")])

from tqdm import tqdm

from utils.atomic import atomic_save_image, atomic_write
from utils.data.annotation import parse_annotation_line, read_annotation_file
from utils.data.data_source import dataset_for, resolve_data
from utils.data.datasets import read_dataset
from utils.metrics.error_breakdown import class_agnostic_map, detection_kinds
from utils.errors import UserError, run_entry
from utils.metrics.evaluation import (EVAL_CONFIDENCE, EVAL_NMS_IOU, evaluate_model, samples_from_annotation_lines,
                                      samples_from_records, samples_from_voc, score)
from utils.metrics.metrics_table import print_metrics_table
from utils.engine.run_dirs import latest_run_with, new_run_dir
from utils.metrics.plots import plot_ap_bars, plot_confusion_matrix, plot_pr_curves
from utils.engine.run_metadata import (adoptable_threshold, calibration_fields, metadata_path, read_metadata,
                                       write_metadata)
from utils.utils import get_classes
from utils.metrics.mean_ap import read_map_txt, write_map_txt
from yolo import YOLO, draw_detections, newest_weights_if_missing, open_image

# (command, what it does): --help shows them above the settings.
_EXAMPLES = (
    ("python get_map.py --data my_set/data.yaml",
     "score the newest run's weights on the dataset's test images (its validation images when it has no test split)"),
    ("python get_map.py --data my_set/data.yaml --image_set val",
     "score them on the validation images and store the best-F1 threshold in the weights' metadata"),
    ('python get_map.py --model_path logs/exp/best_epoch_weights.pth --input_shape "[320, 320]"',
     "score given weights at another input size on VOCdevkit's test set"),
)
# YOLO._defaults' keys are settings too (settings_namespace); --help reads their descriptions in yolo.py.
_DESCRIBED_IN = ("yolo.py",)

# --- data ---
data = ""                                  # the dataset to evaluate: a data.yaml, a VOC or YOLO folder or a COCO JSON (as train.py --data)
annotation_path = ""                       # or a training-list file to evaluate (ground truth from its lines / XMLs)
image_set = "test"                         # which split to evaluate: VOC2007/ImageSets/Main/<image_set>.txt, or --data's list
classes_path = "model_data/sample_classes.txt"  # class names, one per line
VOCdevkit_path = "VOCdevkit"               # dataset root holding VOC2007/
dataset_format = "voc"                     # with dataset_path: "voc", "yolo" or "coco" (as voc_annotation.py)
dataset_path = ""                          # "" = VOCdevkit_path; else the dataset voc_annotation.py converted
image_dir = ""                             # COCO: folder of the images; "" = found beside the JSON
lists_dir = "."                            # with dataset_path: the image set is <lists_dir>/2007_<image_set>.txt
# --- evaluation ---
map_mode = 0                               # 0 all, 1 detections only, 2 ground truth only, 3 VOC mAP, 4 COCO mAP
MINOVERLAP = 0.5                           # IoU a detection needs to be a true positive (VOC mAP)
confidence = EVAL_CONFIDENCE               # detections kept down to this score, so PR curves are complete
nms_iou = EVAL_NMS_IOU                     # NMS IoU for the evaluated detections
score_threhold = 0.5                       # (upstream's spelling) score where precision/recall/F1 are reported; not given: the weights' calibrated threshold
calibrate = False                          # True (with image_set val): store the best-F1 threshold in the weights' metadata (an explicit --image_set val does too)
# --- output ---
map_out_path = ""                          # output folder; "" = a new map_out/<name>, map_out/<name>2, ...
name = "exp"                               # output folder name under map_out/ when map_out_path is ""
exist_ok = False                           # True: reuse map_out/<name> instead of numbering a new folder
map_vis = False                            # also save images with their detections >= score_threhold drawn

# What a value given on the command line must be, beyond the type of its default (utils/config.py); YOLO's too.
_LIMITS = {"compile": ("auto", True, False), "map_mode": "0..4", "MINOVERLAP": "0..1", "confidence": "0..1", "nms_iou": "0..1", "score_threhold": "0..1",
           "input_shape": ">=32", "width_mult": ">0", "depth_mult": ">0"}


def write_report(out_path, metrics, result, matrix, class_names):
    """metrics.json, results/pr/pr_<class>.png, results/ap_bars.png, results/confusion_matrix.png."""
    atomic_write(os.path.join(out_path, "metrics.json"), json.dumps(metrics, indent=2))
    results = os.path.join(out_path, "results")
    plot_pr_curves(result, class_names, os.path.join(results, "pr"))
    plot_ap_bars(result, class_names, os.path.join(results, "ap_bars.png"))
    plot_confusion_matrix(matrix, class_names, os.path.join(results, "confusion_matrix.png"))


def _percent(value):
    return "   n/a" if value is None else f"{100 * value:6.2f}"


# YOLO settings this script always passes (its own values); others only when given on the command line (the class
# names, input size and anchors then come from the weights' metadata).
_OWN_YOLO_SETTINGS = ("confidence", "nms_iou")
_OUTPUT_ROOT = "map_out"


def build_yolo(config, given, data_lists=None):
    """The detector. Weights whose metadata names no classes take ``data_lists``' class file (the dataset's),
    unless a classes_path is given."""
    settings = {k: config[k] for k in YOLO._defaults if k in given or k in _OWN_YOLO_SETTINGS}
    if data_lists is not None and "classes_path" not in settings:
        settings["model_path"] = newest_weights_if_missing(settings.get("model_path", YOLO._defaults["model_path"]))
        if not read_metadata(settings["model_path"]).get("class_names"):
            settings["classes_path"] = data_lists.classes_path
    return YOLO(**settings)


def read_samples(config, class_names, data_lists=None):
    """The image set's images with their ground truth (utils/metrics/evaluation.py); problems are printed.

    Upstream's layout: ``VOCdevkit_path/VOC2007/ImageSets/Main/<image_set>.txt`` and its XMLs. With ``data``
    (``data_lists``, its resolved lists) or ``dataset_path``: the images of the ``image_set`` list with the ground
    truth the dataset's reader gives (VOC difficult and COCO iscrowd boxes are ignored by the mAP). With
    ``annotation_path``: that list's images, ground truth from its lines (or the images' VOC XMLs)."""
    if data_lists is not None:
        return _data_samples(config, class_names, data_lists)
    if config["annotation_path"]:
        return samples_from_annotation_lines(read_annotation_file(config["annotation_path"]), class_names)
    if not config["dataset_path"]:
        samples, report = samples_from_voc(config["VOCdevkit_path"], config["image_set"], class_names)
        if report.problems:
            report.print(title=f"image set '{config['image_set']}'")
        return samples
    dataset = read_dataset(config["dataset_format"], config["dataset_path"], class_names, config["image_dir"])
    if dataset.class_names != list(class_names):
        raise UserError(f"the classes of {config['dataset_path']} ({', '.join(dataset.class_names)}) differ from "
                         f"the model's ({', '.join(class_names)}); give the classes file voc_annotation.py wrote")
    list_path = os.path.join(config["lists_dir"], f"2007_{config['image_set']}.txt")
    return samples_from_records(dataset.records, [parse_annotation_line(line)[0]
                                                  for line in read_annotation_file(list_path)])


def _data_samples(config, class_names, lists):
    """The samples of ``--data``'s ``image_set`` list (the validation list when the dataset has no test images)."""
    if lists.class_names != list(class_names):
        raise UserError(f"the classes of {config['data']} ({', '.join(lists.class_names)}) differ from the model's "
                        f"({', '.join(class_names)}): these weights were trained on other data or another class order")
    if config["image_set"] not in ("train", "val", "test"):
        raise UserError(f"with --data, image_set is train, val or test, got {config['image_set']!r}")
    list_path = lists.list_path(config["image_set"])
    if list_path is None:
        print(f"{config['data']} has no test images: evaluating its validation list instead.")
        list_path = lists.val
    print(f"Evaluating {list_path} ({config['image_set']} of {config['data']})")
    return samples_from_records(dataset_for(lists).records, [parse_annotation_line(line)[0]
                                                             for line in read_annotation_file(list_path)])


def report_threshold(config, given, yolo):
    """The score where P / R / F1 are reported: ``score_threhold`` when given, else the weights' calibrated
    threshold (the one predict.py uses), else the default."""
    if "score_threhold" in given:
        return config["score_threhold"]
    threshold, _ = adoptable_threshold(yolo.metadata)
    if threshold is None:
        return config["score_threhold"]
    print(f"P, R and F1 at the weights' calibrated threshold {threshold:.4f} (pass --score_threhold to choose)")
    return threshold


def output_path(config):
    """Where results go: ``map_out_path`` as given, else a new numbered ``map_out/<name>`` (map_mode 3 / 4, which
    read existing files, take the newest folder that has them)."""
    if config["map_out_path"]:
        return config["map_out_path"]
    if config["map_mode"] in (3, 4):
        newest = latest_run_with(_OUTPUT_ROOT, "detection-results")
        if newest is None:
            raise UserError(f"map_mode {config['map_mode']} scores existing files, and no folder under "
                            f"{_OUTPUT_ROOT}/ has detection-results/: give --map_out_path")
        return os.path.dirname(newest)
    return new_run_dir(_OUTPUT_ROOT, config["name"], config["exist_ok"])


def write_detection_files(config, samples, detections, yolo):
    """``detection-results/<id>.txt`` per image (upstream's integer format, for other tools), and with map_vis
    the images with their detections >= score_threhold drawn."""
    vis_dir = os.path.join(config["map_out_path"], "images-optional")
    for sample, rows in zip(samples, detections):
        write_map_txt(config["map_out_path"], sample.image_id, None, rows, yolo.class_names)
        if config["map_vis"]:
            confident = rows[rows[:, 4] >= config["score_threhold"]]
            drawn = draw_detections(open_image(sample.image_path).convert("RGB"), confident[:, :4], confident[:, 4],
                                    confident[:, 5].astype(int), yolo.class_names, yolo.colors, thickness=2)
            os.makedirs(vis_dir, exist_ok=True)
            atomic_save_image(drawn, os.path.join(vis_dir, sample.image_id + ".png"))
    print("Get predict result done.")


def write_ground_truth(config, samples, class_names):
    for sample in samples:
        write_map_txt(config["map_out_path"], sample.image_id, sample.ground_truth, None, class_names)
    print("Get ground truth result done.")


def report_metrics(config, metrics, result, matrix, class_names):
    write_report(config["map_out_path"], metrics, result, matrix, class_names)
    print_metrics_table(metrics)
    label, key = (("COCO mAP@[.5:.95]", "map50_95") if config["map_mode"] == 4
                  else (f"VOC mAP@{config['MINOVERLAP']:g}", "map50"))
    print(f"{label} = {_percent(metrics[key])} %")
    print(f"Metrics and plots written to {config['map_out_path']}")


def print_error_breakdown(config, samples, detections):
    """Where the mAP goes (utils/metrics/error_breakdown.py): the AP if every detection had the right class, and what
    the detections at score_threhold hit."""
    ground_truths = {i: sample.ground_truth for i, sample in enumerate(samples)}
    detections = dict(enumerate(detections))
    agnostic = class_agnostic_map(ground_truths, detections, config["MINOVERLAP"])
    kinds = detection_kinds(ground_truths, detections, config["score_threhold"], config["MINOVERLAP"])
    print(f"class-agnostic AP@{config['MINOVERLAP']:g} = {_percent(agnostic)} % (all classes merged: the mAP if every "
          f"detection had the right class)")
    print(f"detections with score >= {config['score_threhold']}: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))


def main(config, given=None):
    """Run ``map_mode``; ``given``: setting names from the command line (YOLO settings not given and not
    this script's own come from yolo.py's defaults or the weights' run metadata, e.g. the input size)."""
    given = set(config) if given is None else given
    if config["map_mode"] not in (0, 1, 2, 3, 4):
        raise UserError(f"--map_mode must be 0, 1, 2, 3 or 4, got {config['map_mode']!r}")
    data_lists = resolve_data(config["data"], classes_path=config["classes_path"] if "classes_path" in given
                              else None) if config["data"] else None
    config = {**config, "map_out_path": output_path(config)}
    if config["map_mode"] in (0, 1):
        # The model's own evaluation: detections computed once, in memory, by utils/metrics/evaluation.py; the
        # map_out text files are written from them, and the metric never reads them back.
        yolo = build_yolo(config, given, data_lists)
        config = {**config, "score_threhold": report_threshold(config, given, yolo)}
        samples = read_samples(config, yolo.class_names, data_lists)
        yolo.use_fast_path(len(samples), f"{len(samples)} images")
        evaluation = evaluate_model(yolo.forward_net, samples, yolo.decoding, yolo.class_names, yolo.torch_device,
                                    config["MINOVERLAP"], config["score_threhold"], config["confidence"],
                                    config["nms_iou"], progress=lambda batches: tqdm(batches, desc="detections"),
                                    nms_agnostic=config["nms_agnostic"])
        write_detection_files(config, samples, evaluation.detections, yolo)
        if config["map_mode"] == 0:
            write_ground_truth(config, samples, yolo.class_names)
            report_metrics(config, *evaluation[:3], yolo.class_names)
            print_error_breakdown(config, samples, evaluation.detections)
            record_calibration(config, evaluation.metrics, evaluation.result, yolo, wants_calibration(config, given))
    elif config["map_mode"] == 2:
        class_names = data_lists.class_names if data_lists and "classes_path" not in given \
            else get_classes(config["classes_path"])[0]
        write_ground_truth(config, read_samples(config, class_names, data_lists), class_names)
    else:
        # Files written by map_mode 1 / 2 or by another tool: integer pixel boxes, so this can differ slightly
        # from map_mode 0, which scores the float boxes in memory.
        class_names, _ = get_classes(config["classes_path"])
        ground_truths, detections = read_map_txt(config["map_out_path"], class_names)
        print(f"Scoring the text files in {config['map_out_path']}/ (integer boxes); map_mode 0 scores the model's "
              f"float boxes and is the figure training reports.")
        report_metrics(config, *score(ground_truths, detections, class_names, config["MINOVERLAP"],
                                      config["score_threhold"]), class_names)


def wants_calibration(config, given):
    """Whether this evaluation may write the weights' metadata: ``--calibrate`` decides when given, else an
    explicit ``--image_set val`` asks for it (the validation split is what a threshold is calibrated on)."""
    if "calibrate" in given:
        return bool(config["calibrate"])
    return "image_set" in given and config["image_set"] == "val"


def record_calibration(config, metrics, result, yolo, store):
    """Print the best-F1 score threshold; when ``store`` (see ``wants_calibration``), on the validation split,
    also store it (with the val mAP and what it was measured on) in the weights' run metadata, where YOLO takes
    it as the default confidence. Evaluation is otherwise read-only on the model."""
    best = metrics["best_f1"]
    if best["threshold"] is None:
        return
    print(f"Best-F1 score threshold on '{config['image_set']}': {best['threshold']:.4f} (F1 {best['f1']:.3f}, "
          f"{metrics['counts']['ground_truths']} objects in {metrics['counts']['images']} images)")
    if not store:
        print("Not stored: evaluation leaves the weights' metadata as it is (--image_set val or --calibrate True "
              "stores a validation threshold as the weights' default confidence).")
        return
    if config["image_set"] != "val" or config["MINOVERLAP"] != 0.5:
        print("Not stored in the weights' metadata: only the validation split at MINOVERLAP 0.5 calibrates it (the "
              "test split would leak test labels into the model's settings); evaluate --image_set val to store one.")
        return
    weights_path = yolo.model_path
    metadata = read_metadata(weights_path)
    if not metadata:
        print(f"Not stored: {metadata_path(weights_path)} does not exist (train.py writes it next to the weights).")
        return
    metadata.pop("format", None)                  # write_metadata adds it back
    metadata.update(calibration_fields(result, yolo.decoding.preprocessing(), metrics["counts"]["images"]),
                    score_threshold_source=f"get_map.py image_set=val ({metrics['counts']['images']} images)")
    reason = "--calibrate True" if config["calibrate"] else "--image_set val given; --calibrate False leaves it as it is"
    print(f"Stored in {write_metadata(weights_path, metadata)} ({reason}): YOLO and predict.py use it as the "
          f"confidence unless --confidence is given.")


def settings_namespace():
    """This script's globals plus YOLO's settings, which it takes too (this script's values win)."""
    return {**YOLO._defaults, **globals()}


def settings(argv):
    """This script's settings plus YOLO's, with command-line overrides."""
    return resolve_config(settings_namespace(), argv, script_path=__file__)


if __name__ == "__main__":
    run_entry(lambda: main(settings(sys.argv[1:]), given=command_line_names(sys.argv[1:])))

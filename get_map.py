"""Evaluate a trained YOLOv4 on a VOC image set (upstream's get_map.py, with this project's metrics).

map_mode 0 writes detections and ground truth to ``map_out/`` (upstream's ``detection-results/``
and ``ground-truth/`` text files) and evaluates them; 1 and 2 write only one side; 3 evaluates
existing files (VOC mAP@0.5 headline); 4 the same with the COCO-style mAP@[.5:.95] headline,
computed natively (no pycocotools). Evaluation writes ``metrics.json``, per-class PR curves, an AP
bar chart and a confusion matrix, and prints a table. Any ``YOLO._defaults`` key can be overridden too:
    python get_map.py --model_path logs/best_epoch_weights.pth --input_shape "[320, 320]"
"""
import json
import math
import os
import sys

import numpy as np
from tqdm import tqdm

from utils.config import command_line_names, resolve_config
from utils.dataset_check import parse_voc_xml
from utils.plots import plot_ap_bars, plot_confusion_matrix, plot_pr_curves
from utils.run_metadata import calibration_fields, metadata_path, read_metadata, write_metadata
from utils.utils import get_classes
from utils.utils_map import confusion_matrix, evaluate_detections, read_map_txt, write_map_txt
from yolo import YOLO, as_pil_image, draw_detections, open_image

map_mode = 0                               # 0 all, 1 detections only, 2 ground truth only, 3 VOC mAP, 4 COCO mAP
classes_path = "model_data/sample_classes.txt"  # class names, one per line
MINOVERLAP = 0.5                           # IoU a detection needs to be a true positive (VOC mAP)
confidence = 0.001                         # detections kept down to this score, so PR curves are complete
nms_iou = 0.5                              # NMS IoU for the evaluated detections
score_threhold = 0.5                       # (upstream's spelling) score where precision/recall/F1 are reported
map_vis = False                            # also save images with their detections >= score_threhold drawn
VOCdevkit_path = "VOCdevkit"               # dataset root holding VOC2007/
map_out_path = "map_out"                   # output folder
image_set = "test"                         # which VOC2007/ImageSets/Main/<image_set>.txt to evaluate

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image_ids(voc_path, image_set_name):
    path = os.path.join(voc_path, "VOC2007", "ImageSets", "Main", image_set_name + ".txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image set list not found: {path} (run voc_annotation.py, or set --image_set)")
    with open(path, encoding="utf-8") as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise ValueError(f"image set list {path} names no images")
    return ids


def image_path_of(voc_path, image_id):
    """``JPEGImages/<id>.<ext>`` for the first image extension present."""
    stem = os.path.join(voc_path, "VOC2007", "JPEGImages", image_id)
    for ext in _IMAGE_EXTENSIONS:
        for candidate in (stem + ext, stem + ext.upper()):
            if os.path.isfile(candidate):
                return candidate
    extensions = ",".join(ext[1:] for ext in _IMAGE_EXTENSIONS)
    raise FileNotFoundError(f"no image for id {image_id!r}: none of {stem}.{{{extensions}}} exists")


def ground_truth_of(voc_path, image_id, class_names):
    """``(n, 6)`` rows ``[x1, y1, x2, y2, class, difficult]`` from the image's VOC XML; objects of
    other classes are left out (as upstream)."""
    xml_path = os.path.join(voc_path, "VOC2007", "Annotations", image_id + ".xml")
    annotation = parse_voc_xml(xml_path, class_names)
    if not annotation.ok:
        reason = annotation.problems[0].reason.split(";")[0]         # drop the "; image skipped" of a scan
        raise ValueError(f"cannot read the ground truth of {image_id!r}: {xml_path}: {reason}")
    classes = [class_names.index(name) for name in annotation.names]
    return np.column_stack([annotation.boxes, classes, annotation.difficult]).astype(np.float64).reshape(-1, 6)


def detection_rows(boxes, scores, classes):
    """``detect()``'s arrays as ``(k, 6)`` rows ``[x1, y1, x2, y2, score, class]``."""
    return np.column_stack([boxes, scores, classes]).astype(np.float64).reshape(-1, 6)


def _at_score(result, c, threshold):
    """Precision, recall and F1 of class ``c`` keeping detections with score >= ``threshold``."""
    kept = int(np.sum(np.asarray(result["scores"][c]) >= threshold))
    if not kept:
        return 0.0, 0.0, 0.0
    precision, recall = float(result["precision"][c][kept - 1]), float(result["recall"][c][kept - 1])
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def _finite(value):
    """JSON has no NaN: a NaN becomes null."""
    value = float(value)
    return None if math.isnan(value) else value


def summarize(result, matrix, ground_truths, class_names, score_threshold, min_overlap=0.5):
    """The JSON-ready numbers of an ``evaluate_detections`` result (``map50`` and per-class ``ap50`` are
    VOC AP at IoU ``min_overlap``, 0.5 unless MINOVERLAP says otherwise)."""
    per_class = {}
    for c, name in enumerate(class_names):
        precision, recall, f1 = _at_score(result, c, score_threshold)
        per_class[name] = {"ap50": _finite(result["ap50"][c]), "ap50_95": _finite(result["ap50_95"][c]),
                           "num_gt": int(result["num_gt"][c]), "num_det": int(result["num_det"][c]),
                           "precision": precision, "recall": recall, "f1": f1}
    difficult = sum(int(np.sum(rows[:, 5] != 0)) for rows in ground_truths.values() if rows.shape[1] == 6)
    thresholds = np.asarray(result["iou_thresholds"])
    ap75 = result["ap"][np.isclose(thresholds, 0.75)]
    has_gt = np.asarray(result["num_gt"]) > 0
    return {
        "map50": _finite(result["map50"]),
        "map50_95": _finite(result["map50_95"]),
        "min_overlap": min_overlap,
        "map75": _finite(ap75[0][has_gt].mean()) if len(ap75) and has_gt.any() else None,
        "score_threshold": score_threshold,
        "best_f1": {"threshold": _finite(result["f1_threshold"]), "f1": result["f1"],
                    "precision": result["precision_at_f1"], "recall": result["recall_at_f1"]},
        "classes": per_class,
        "counts": {"images": len(ground_truths), "ground_truths": int(np.sum(result["num_gt"])),
                   "difficult": difficult, "detections": int(np.sum(result["num_det"]))},
        "confusion_matrix": matrix.tolist(),
    }


def evaluate(ground_truths, detections, class_names, min_overlap=0.5, score_threshold=0.5):
    """Metrics of ``detections`` against ``ground_truths`` (dicts image id -> rows, see utils/utils_map.py).

    Returns ``(metrics, result, matrix)``: the ``summarize`` dict, the raw ``evaluate_detections``
    result (curves for plotting) and the confusion matrix at ``score_threshold`` / ``min_overlap``.
    """
    result = evaluate_detections(ground_truths, detections, len(class_names), voc_iou_threshold=min_overlap)
    matrix = confusion_matrix(ground_truths, detections, len(class_names), score_threshold, min_overlap)
    return summarize(result, matrix, ground_truths, class_names, score_threshold, min_overlap), result, matrix


def evaluate_model(yolo, samples, min_overlap=0.5, score_threshold=0.5):
    """Run ``yolo.detect`` on each ``(image path or image, ground truth rows (n, 5|6))`` of ``samples``
    and return the ``summarize`` metrics dict. Everything stays in memory (no map_out files), so
    box coordinates are not truncated to integers as in the text files."""
    ground_truths, detections = {}, {}
    for index, (image, ground_truth) in enumerate(samples):
        image = open_image(image) if isinstance(image, (str, os.PathLike)) else as_pil_image(image)
        ground_truths[index] = np.asarray(ground_truth, dtype=np.float64)
        detections[index] = detection_rows(*yolo.detect(image))
    return evaluate(ground_truths, detections, yolo.class_names, min_overlap, score_threshold)[0]


def write_report(out_path, metrics, result, matrix, class_names):
    """metrics.json, results/pr/pr_<class>.png, results/ap_bars.png, results/confusion_matrix.png."""
    os.makedirs(out_path, exist_ok=True)
    with open(os.path.join(out_path, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    results = os.path.join(out_path, "results")
    plot_pr_curves(result, class_names, os.path.join(results, "pr"))
    plot_ap_bars(result, class_names, os.path.join(results, "ap_bars.png"))
    plot_confusion_matrix(matrix, class_names, os.path.join(results, "confusion_matrix.png"))


def _percent(value):
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def print_table(metrics):
    print(f"{'class':>16} {'AP50':>6} {'AP50:95':>7} {'gt':>6} {'det':>7} {'P':>6} {'R':>6} {'F1':>6}"
          f"   (P, R, F1 at score >= {metrics['score_threshold']})")
    for name, row in metrics["classes"].items():
        print(f"{name:>16} {_percent(row['ap50'])} {_percent(row['ap50_95']):>7} {row['num_gt']:6d} "
              f"{row['num_det']:7d} {_percent(row['precision'])} {_percent(row['recall'])} {_percent(row['f1'])}")
    best = metrics["best_f1"]
    print(f"mAP@{metrics['min_overlap']:g} = {_percent(metrics['map50'])} %   mAP@[.5:.95] = {_percent(metrics['map50_95'])} %   "
          f"mAP@0.75 = {_percent(metrics['map75'])} %")
    print(f"best F1 {best['f1']:.3f} at score {best['threshold']} (P {best['precision']:.3f}, R {best['recall']:.3f})")


# YOLO settings this script always passes (its own values); others only when given on the command line.
_OWN_YOLO_SETTINGS = ("classes_path", "confidence", "nms_iou")


def write_detections(config, image_ids, class_names, given):
    yolo = YOLO(**{k: config[k] for k in YOLO._defaults if k in given or k in _OWN_YOLO_SETTINGS})

    vis_dir = os.path.join(config["map_out_path"], "images-optional")
    for image_id in tqdm(image_ids, desc="detections"):
        image = open_image(image_path_of(config["VOCdevkit_path"], image_id))
        boxes, scores, classes = yolo.get_map_txt(image_id, image, class_names, config["map_out_path"])
        if config["map_vis"]:
            confident = scores >= config["score_threhold"]
            drawn = draw_detections(image.convert("RGB"), boxes[confident], scores[confident], classes[confident],
                                    yolo.class_names, yolo.colors, thickness=2)
            os.makedirs(vis_dir, exist_ok=True)
            drawn.save(os.path.join(vis_dir, image_id + ".png"))
    print("Get predict result done.")


def write_ground_truth(config, image_ids, class_names):
    for image_id in tqdm(image_ids, desc="ground truth"):
        rows = ground_truth_of(config["VOCdevkit_path"], image_id, class_names)
        write_map_txt(config["map_out_path"], image_id, rows, None, class_names)
    print("Get ground truth result done.")


def main(config, given=None):
    """Run ``map_mode``; ``given``: setting names from the command line (YOLO settings not given and not
    this script's own come from yolo.py's defaults or the weights' run metadata, e.g. the input size)."""
    given = set(config) if given is None else given
    class_names, _ = get_classes(config["classes_path"])
    if config["map_mode"] not in (0, 1, 2, 3, 4):
        raise SystemExit(f"error: --map_mode must be 0, 1, 2, 3 or 4, got {config['map_mode']!r}")
    if config["map_mode"] in (0, 1, 2):
        image_ids = read_image_ids(config["VOCdevkit_path"], config["image_set"])
    if config["map_mode"] in (0, 1):
        write_detections(config, image_ids, class_names, given)
    if config["map_mode"] in (0, 2):
        write_ground_truth(config, image_ids, class_names)
    if config["map_mode"] in (0, 3, 4):
        ground_truths, detections = read_map_txt(config["map_out_path"], class_names)
        metrics, result, matrix = evaluate(ground_truths, detections, class_names, config["MINOVERLAP"],
                                           config["score_threhold"])
        write_report(config["map_out_path"], metrics, result, matrix, class_names)
        print_table(metrics)
        label, key = ("COCO mAP@[.5:.95]", "map50_95") if config["map_mode"] == 4 else (f"VOC mAP@{config['MINOVERLAP']:g}", "map50")
        print(f"{label} = {_percent(metrics[key])} %")
        if config["map_mode"] == 0:             # the detections come from model_path in this very run
            record_calibration(config, metrics, result)
        print(f"Metrics and plots written to {config['map_out_path']}")


def record_calibration(config, metrics, result):
    """Print the best-F1 score threshold; on the validation split also store it (with the val mAP) in
    model_path's run metadata, where YOLO takes it as the default confidence."""
    best = metrics["best_f1"]
    if best["threshold"] is None:
        return
    print(f"Best-F1 score threshold on '{config['image_set']}': {best['threshold']:.4f} (F1 {best['f1']:.3f})")
    if config["image_set"] != "val" or config["MINOVERLAP"] != 0.5:
        print("Not stored in the weights' metadata: only the validation split at MINOVERLAP 0.5 calibrates it (the "
              "test split would leak test labels into the model's settings); evaluate --image_set val to store one.")
        return
    weights_path = config["model_path"]
    metadata = read_metadata(weights_path)
    if not metadata:
        print(f"Not stored: {metadata_path(weights_path)} does not exist (train.py writes it next to the weights).")
        return
    metadata.pop("format", None)                  # write_metadata adds it back
    metadata.update(calibration_fields(result),
                    score_threshold_source=f"get_map.py image_set=val ({metrics['counts']['images']} images)")
    print(f"Stored in {write_metadata(weights_path, metadata)}: YOLO and predict.py use it as the confidence "
          f"unless --confidence is given.")


def settings(argv):
    """This script's settings plus YOLO's (this script's values win), with command-line overrides."""
    return resolve_config({**YOLO._defaults, **globals()}, argv, script_path=__file__)


if __name__ == "__main__":
    main(settings(sys.argv[1:]), given=command_line_names(sys.argv[1:]))

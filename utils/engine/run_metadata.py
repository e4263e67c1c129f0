"""Run metadata stored next to a weights file: ``best_epoch_weights.pth`` -> ``best_epoch_weights.json``.

It records what the weights need at inference (input size, anchors, class names, model scale),
how they were trained (focal loss settings), their validation metrics and the calibrated score
threshold (best F1 on the validation set). yolo.py and predict.py use it for settings the user
does not give, so weights trained at 160 px with 4 classes predict correctly without restating.
"""
import json
import math
import os

from utils.atomic import atomic_write

FORMAT = "yolov4-pytorch run metadata v1"


def metadata_path(weights_path):
    return os.path.splitext(weights_path)[0] + ".json"


def write_metadata(weights_path, metadata):
    """Write the sidecar atomically (temp file + rename)."""
    return atomic_write(metadata_path(weights_path), json.dumps({"format": FORMAT, **metadata}, indent=2,
                                                                 sort_keys=True))


def read_metadata(weights_path):
    """The sidecar's dict, or ``{}`` when there is none; a corrupt sidecar is reported, not fatal."""
    path = metadata_path(weights_path)
    if not weights_path or not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        print(f"Warning: ignoring unreadable run metadata {path}: {err}")
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        print(f"Warning: ignoring {path}: not a run-metadata file of this repository")
        return {}
    return data


# A best-F1 threshold measured on fewer objects than this is noise (one image can put it anywhere): it is
# recorded but not adopted as the detectors' default confidence.
MIN_CALIBRATION_OBJECTS = 20


def adoptable_threshold(metadata):
    """``(threshold, why_not)``: the calibrated score threshold of ``metadata`` when it may become a default
    confidence (``why_not`` None), else ``(None, reason)`` (none stored, or measured on too few objects)."""
    threshold = metadata.get("score_threshold")
    if threshold is None:
        return None, "no calibrated threshold stored"
    objects = metadata.get("score_threshold_objects")
    if objects is not None and objects < MIN_CALIBRATION_OBJECTS:
        return None, (f"the calibrated threshold {threshold:.4f} was measured on {objects} validation objects "
                      f"(fewer than {MIN_CALIBRATION_OBJECTS})")
    return float(threshold), None


def calibration_fields(result, preprocessing, images=None):
    """Metadata keys from an ``evaluate_detections`` result on the validation set: its mAPs and the
    best-F1 score threshold with its F1, precision and recall (None where undefined, e.g. no detections), the
    number of ``images`` and of objects it was measured on, and ``preprocessing`` (``Decoding.preprocessing()``:
    letterbox_image, resize) they were measured with."""
    def number(value):
        return None if value is None or not math.isfinite(value) else float(value)
    return {**preprocessing, "score_threshold_images": images,
            "score_threshold_objects": int(sum(result["num_gt"])),
            "val_map50": number(result["map50"]), "val_map50_95": number(result["map50_95"]),
            "score_threshold": number(result["f1_threshold"]), "val_f1": number(result["f1"]),
            "val_precision_at_f1": number(result["precision_at_f1"]),
            "val_recall_at_f1": number(result["recall_at_f1"])}

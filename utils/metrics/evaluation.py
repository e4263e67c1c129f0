"""The one evaluation path: detections and mAP of a model on an image set.

Training (its per-epoch mAP and the calibrated score threshold), ``get_map.py``, ``YOLO.detect`` and the study
tool all go through this module, so the same weights on the same images get the same detections and the same
mAP everywhere:

- images are read with ``utils.data.preprocess.open_image`` and turned into the network input by
  ``utils.data.preprocess.network_input`` (one resize policy, chosen by ``Decoding.letterbox_image``);
- the network is the fused inference form (``nets.fuse.inference_model``), run in batches of
  ``EVAL_BATCH_SIZE``; decoding, NMS and the mapping back to image pixels are ``utils.deploy.decode``'s;
- boxes stay floats; ground truth is read at the image's original resolution, from the VOC XML when the image
  has one (difficult objects kept and ignored the VOC way), else from the training list's boxes.

The metric is computed from these arrays in memory, never from re-read text files.
"""
import copy
import os
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch

from nets.fuse import inference_model
from utils.data.annotation import parse_annotation_line
from utils.data.dataset_check import DatasetError, DatasetReport
from utils.data.preprocess import RESIZE_METHOD, network_input, open_image
from utils.deploy.decode import correct_boxes, decode_outputs, postprocess
from utils.metrics.mean_ap import confusion_matrix, evaluate_detections
from utils.data.voc import annotation_of_image, read_image_set, voc_folder, voc_records

EVAL_CONFIDENCE = 0.001     # detections kept down to this score, so precision-recall curves are complete
EVAL_NMS_IOU = 0.5          # NMS IoU of evaluated detections
EVAL_BATCH_SIZE = 8         # images per forward pass; the same everywhere, so batched float sums agree too
# Training validates letterboxed (its validation loader keeps the aspect ratio on grey), so its mAP, the calibrated
# threshold and inference default to that too; weights' metadata records the choice (Decoding.preprocessing).
LETTERBOX_IMAGE = True


class EvalSample(NamedTuple):
    """One image of an evaluation set; ``ground_truth``: ``(n, 6)`` float64 rows
    ``[x1, y1, x2, y2, class, difficult]`` in original-image pixels."""
    image_id: str
    image_path: str
    ground_truth: np.ndarray


@dataclass(frozen=True)
class Decoding:
    """How a model's outputs become boxes, and how its inputs were made from images."""
    anchors: np.ndarray             # (9, 2) anchor (w, h) in input pixels
    anchors_mask: tuple             # anchor indices per level, level 0 = stride 32
    input_shape: tuple              # network input (h, w)
    letterbox_image: bool           # True: aspect kept on grey; False: stretched
    scale_x_y: tuple = None         # centre scale per level; None = 1.0 each

    def preprocessing(self):
        """The metadata fields naming the preprocessing (stored beside a calibrated threshold)."""
        return {"letterbox_image": bool(self.letterbox_image), "resize": RESIZE_METHOD}


class Evaluation(NamedTuple):
    """``metrics``: the JSON-ready summary (see ``summarize``); ``result``: ``evaluate_detections``' dict (curves);
    ``matrix``: the confusion matrix; ``detections``: per sample ``(k, 6)`` rows ``[x1, y1, x2, y2, score,
    class]`` in image pixels, aligned with the samples."""
    metrics: dict
    result: dict
    matrix: np.ndarray
    detections: list


def fused_net(model, device):
    """The fused inference form of a training model (a copy: ``model`` is left as it is)."""
    return inference_model(copy.deepcopy(model).float().eval(), device)


def detections_from_outputs(outputs, decoding, image_shapes, confidence, nms_iou, nms_agnostic=False):
    """Head outputs of a batch -> per image a ``(k, 6)`` tensor ``[x1, y1, x2, y2, score, class]`` in the pixels
    of its original image (``image_shapes``: one ``(h, w)`` per image), highest score first. ``nms_agnostic``:
    NMS across classes (see ``batched_nms``).

    A box that lies wholly in the letterbox's grey border has no area once clipped to the image: it is dropped
    (it could match nothing and cannot be drawn)."""
    decoded = decode_outputs(outputs, decoding.anchors, decoding.anchors_mask, decoding.input_shape,
                             decoding.scale_x_y)                                     # (B, N, 5 + C)
    return detections_from_decoded(decoded, decoding, image_shapes, confidence, nms_iou, nms_agnostic)


def detections_from_decoded(decoded, decoding, image_shapes, confidence, nms_iou, nms_agnostic=False):
    """``detections_from_outputs`` from decoded predictions ``(B, N, 5 + C)`` (an exported model's output)."""
    results = []
    for rows, image_shape in zip(postprocess(decoded, confidence, nms_iou, class_agnostic=nms_agnostic), image_shapes):
        boxes = correct_boxes(rows[:, :4], decoding.input_shape, tuple(image_shape), decoding.letterbox_image)
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        results.append(torch.cat([boxes, rows[:, 4:]], dim=1)[visible])
    return results


def detect_samples(net, samples, decoding, device, confidence=EVAL_CONFIDENCE, nms_iou=EVAL_NMS_IOU,
                   batch_size=EVAL_BATCH_SIZE, progress=None, nms_agnostic=False, level=None):
    """Detections of ``net`` (a fused inference network) on every sample: a list of float64 ``(k, 6)`` arrays.

    ``net`` returns the head outputs (a list of levels) or the decoded predictions ``(B, N, 5 + C)`` (as an exported
    model does, e.g. ``YOLO_ONNX._decoded``). ``progress``: an optional callable wrapping the batch iterator (e.g.
    ``tqdm``). ``level``: keep only that output level's candidates (0 = stride 32), decoded as with all levels."""
    view = (nms_agnostic, level)
    return detect_views(net, samples, decoding, device, [view], confidence, nms_iou, batch_size, progress)[view]


def detect_views(net, samples, decoding, device, views, confidence=EVAL_CONFIDENCE, nms_iou=EVAL_NMS_IOU,
                 batch_size=EVAL_BATCH_SIZE, progress=None):
    """``{view: detections}`` (as ``detect_samples`` returns them) for each ``view`` = ``(nms_agnostic, level)``,
    all from one forward pass of each batch: a study's per-level and class-agnostic figures cost one pass."""
    scales = decoding.scale_x_y or (1.0,) * len(decoding.anchors_mask)
    decodings = {view: decoding if view[1] is None else
                 replace(decoding, anchors_mask=(decoding.anchors_mask[view[1]],), scale_x_y=(scales[view[1]],))
                 for view in views}
    detections = {view: [] for view in views}
    starts = range(0, len(samples), batch_size)
    with torch.inference_mode():
        for start in (progress(starts) if progress else starts):
            inputs, shapes = zip(*(network_input(open_image(sample.image_path), decoding.input_shape,
                                                 decoding.letterbox_image)
                                   for sample in samples[start:start + batch_size]))
            outputs = net(torch.from_numpy(np.stack(inputs)).to(device))              # input (b, 3, H, W)
            for (agnostic, level), view_decoding in decodings.items():
                found = _view_detections(outputs, level, view_decoding, shapes, confidence, nms_iou, agnostic)
                detections[(agnostic, level)].extend(rows.double().cpu().numpy() for rows in found)
    return detections


def _view_detections(outputs, level, decoding, shapes, confidence, nms_iou, nms_agnostic):
    """Per-image detections of one batch's ``outputs`` (head levels, or decoded ``(B, N, 5 + C)``), ``level`` alone
    when given."""
    if isinstance(outputs, torch.Tensor):          # already decoded: an exported model's
        if level is not None:
            raise ValueError("a decoded output has no levels to keep one of")
        return detections_from_decoded(outputs, decoding, shapes, confidence, nms_iou, nms_agnostic)
    return detections_from_outputs(outputs if level is None else [outputs[level]], decoding, shapes, confidence,
                                   nms_iou, nms_agnostic)


def evaluate_model(net, samples, decoding, class_names, device, min_overlap=0.5, score_threshold=0.5,
                   confidence=EVAL_CONFIDENCE, nms_iou=EVAL_NMS_IOU, batch_size=EVAL_BATCH_SIZE, progress=None,
                   nms_agnostic=False, level=None):
    """Detect on ``samples`` and score the detections: an ``Evaluation`` (``level``: see ``detect_samples``)."""
    if not samples:
        raise DatasetError("the evaluation set has no usable image")
    detections = detect_samples(net, samples, decoding, device, confidence, nms_iou, batch_size, progress,
                                nms_agnostic, level)
    return score_detections(samples, detections, class_names, min_overlap, score_threshold)


def score_detections(samples, detections, class_names, min_overlap=0.5, score_threshold=0.5):
    """mAPs, best-F1 point and confusion matrix of per-sample ``detections`` against the samples' ground truth."""
    ground_truths = {i: sample.ground_truth for i, sample in enumerate(samples)}
    metrics, result, matrix = score(ground_truths, dict(enumerate(detections)), class_names, min_overlap,
                                    score_threshold)
    return Evaluation(metrics, result, matrix, list(detections))


def score(ground_truths, detections, class_names, min_overlap=0.5, score_threshold=0.5):
    """``(metrics, result, matrix)`` of ``detections`` against ``ground_truths`` (dicts image key -> rows, see
    utils/metrics/mean_ap.py): the ``summarize`` dict, ``evaluate_detections``' result and the confusion matrix."""
    result = evaluate_detections(ground_truths, detections, len(class_names), voc_iou_threshold=min_overlap)
    matrix = confusion_matrix(ground_truths, detections, len(class_names), score_threshold, min_overlap)
    return summarize(result, matrix, ground_truths, class_names, score_threshold, min_overlap), result, matrix


def _finite(value):
    """JSON has no NaN: a NaN becomes null."""
    value = float(value)
    return None if np.isnan(value) else value


def _at_score(result, c, threshold):
    """Precision, recall and F1 of class ``c`` keeping detections with score >= ``threshold``."""
    kept = int(np.sum(np.asarray(result["scores"][c]) >= threshold))
    if not kept:
        return 0.0, 0.0, 0.0
    precision, recall = float(result["precision"][c][kept - 1]), float(result["recall"][c][kept - 1])
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


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
        # COCO by object size (box area in the evaluated image's pixels: < 32^2, to 96^2, above); -1: no such gt.
        "by_size": {key: result[key] for key in ("ap_small", "ap_medium", "ap_large", "ar100", "ar_small",
                                                 "ar_medium", "ar_large")},
        "score_threshold": score_threshold,
        "best_f1": {"threshold": _finite(result["f1_threshold"]), "f1": result["f1"],
                    "precision": result["precision_at_f1"], "recall": result["recall_at_f1"]},
        "classes": per_class,
        "counts": {"images": len(ground_truths), "ground_truths": int(np.sum(result["num_gt"])),
                   "difficult": difficult, "detections": int(np.sum(result["num_det"]))},
        "confusion_matrix": matrix.tolist(),
    }


def samples_from_voc(VOCdevkit_path, image_set, class_names, year="2007", report=None):
    """The images of ``ImageSets/Main/<image_set>.txt`` with their XML ground truth (all objects of
    ``class_names``, difficult flags kept). Unreadable XMLs and missing images are reported in ``report``
    (a ``DatasetReport``) and skipped, as voc_annotation.py does; ``DatasetError`` when none is left."""
    report = DatasetReport() if report is None else report
    records = voc_records(voc_folder(VOCdevkit_path, year, ""), class_names, report,
                          read_image_set(VOCdevkit_path, year, image_set))
    report.images_kept += len(records)
    if not records:
        raise DatasetError(f"image set '{image_set}' of {VOCdevkit_path} has no usable image; see the problems "
                           f"reported above")
    return [EvalSample(r.image_id, r.image_path, r.ground_truth()) for r in records], report


def samples_from_annotation_lines(lines, class_names):
    """Evaluation samples for the images of training-list lines (e.g. the validation list).

    An image inside a VOC folder (``.../JPEGImages/<stem>.<ext>`` with ``.../Annotations/<stem>.xml``) takes its
    ground truth from that XML, as get_map.py does: difficult objects, which the training lists leave out, are
    then ignored instead of turning detections into false positives. Other images use the list's boxes.
    """
    samples = []
    for line in lines:
        image_path, boxes = parse_annotation_line(line)
        record = _voc_record_of(image_path, class_names)
        if record is not None:
            samples.append(EvalSample(record.image_id, image_path, record.ground_truth()))
        else:
            ground_truth = np.column_stack([boxes, np.zeros(len(boxes))]).astype(np.float64).reshape(-1, 6)
            samples.append(EvalSample(image_path, image_path, ground_truth))
    return samples


def _voc_record_of(image_path, class_names):
    """The VOC reader's record of an image in a VOC folder whose XML names this very image, else None."""
    xml_path = annotation_of_image(image_path)
    if xml_path is None:
        return None
    voc_dir = os.path.dirname(os.path.dirname(xml_path))
    image_id = os.path.splitext(os.path.basename(xml_path))[0]
    records = voc_records(voc_dir, class_names, DatasetReport(), [image_id])
    if not records or not os.path.samefile(records[0].image_path, image_path):
        return None                         # unreadable XML, or its <filename> names another image
    return records[0]



def samples_from_records(records, image_paths):
    """Evaluation samples of the records whose images are ``image_paths`` (e.g. the images of a training list),
    in that order; ``DatasetError`` naming the first image the dataset does not hold."""
    by_path = {os.path.normcase(os.path.abspath(r.image_path)): r for r in records}
    samples = []
    for path in image_paths:
        record = by_path.get(os.path.normcase(os.path.abspath(path)))
        if record is None:
            raise DatasetError(f"{path} is in the list but not in the dataset read (another dataset's list?)")
        samples.append(EvalSample(record.image_id, record.image_path, record.ground_truth()))
    return samples

"""Decoding, NMS and letterbox correction against hand-computed values and slow reference loops."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import utils.deploy.decode as utils_bbox
from utils.data.preprocess import resize_for_input
from utils.utils import resize_image
from utils.deploy.decode import DecodeBox, batched_nms, correct_boxes, decode_outputs, postprocess

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
# model_data/yolo_anchors.txt, written out so the expected values below are independent of file reading.
ANCHORS = np.array([[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [72, 146], [142, 110], [192, 243], [459, 401]],
                   dtype=np.float32)


def slow_iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def slow_nms(boxes, scores, classes, threshold):
    """Textbook greedy NMS, one box at a time; ties in input order."""
    boxes, scores, classes = boxes.tolist(), scores.tolist(), classes.tolist()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])       # sorted() is stable
    kept = []
    for i in order:
        if all(classes[k] != classes[i] or slow_iou(boxes[k], boxes[i]) <= threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(n, num_classes, seed):
    """Clustered boxes (plenty of overlaps) with scores rounded to 1 decimal (plenty of exact ties)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(1, n // 6), 2, generator=g) * 200
    xy = centres[torch.randint(0, len(centres), (n,), generator=g)] + torch.randn(n, 2, generator=g) * 8
    wh = torch.rand(n, 2, generator=g) * 40 + 10
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1)
    scores = torch.round(torch.rand(n, generator=g) * 10) / 10
    classes = torch.randint(0, num_classes, (n,), generator=g)
    return boxes, scores, classes


@pytest.mark.parametrize("seed,n,num_classes,threshold", [(0, 60, 1, 0.5), (1, 150, 3, 0.3), (2, 200, 4, 0.7),
                                                           (3, 7, 2, 0.0)])
def test_nms_equals_slow_greedy_loop(seed, n, num_classes, threshold):
    boxes, scores, classes = random_boxes(n, num_classes, seed)
    assert batched_nms(boxes, scores, classes, threshold).tolist() == slow_nms(boxes, scores, classes, threshold)


def test_nms_chunked_and_per_class_paths_equal_slow_loop(monkeypatch):
    """A tiny chunk budget forces the per-class grouping and one-row chunks on a small input."""
    monkeypatch.setattr(utils_bbox, "_NMS_CHUNK_ELEMENTS", 40)
    boxes, scores, classes = random_boxes(180, 3, seed=5)
    assert batched_nms(boxes, scores, classes, 0.45).tolist() == slow_nms(boxes, scores, classes, 0.45)


def test_nms_max_det_keeps_the_best_prefix(monkeypatch):
    boxes, scores, classes = random_boxes(150, 2, seed=6)
    expected = slow_nms(boxes, scores, classes, 0.5)
    assert batched_nms(boxes, scores, classes, 0.5, max_det=10).tolist() == expected[:10]
    monkeypatch.setattr(utils_bbox, "_NMS_CHUNK_ELEMENTS", 40)
    assert batched_nms(boxes, scores, classes, 0.5, max_det=10).tolist() == expected[:10]


def test_nms_classes_never_suppress_each_other_and_ties_keep_input_order():
    box = [10.0, 10.0, 50.0, 50.0]
    boxes = torch.tensor([box, box, box, [11.0, 11.0, 50.0, 50.0]])
    scores = torch.tensor([0.9, 0.9, 0.9, 0.95])
    classes = torch.tensor([0, 1, 0, 1])
    # Class 1: box 3 (higher score) suppresses box 1; class 0: tie, the earlier box 0 wins.
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [3, 0]


@pytest.mark.parametrize("seed,n,num_classes,threshold", [(7, 120, 4, 0.3), (8, 90, 3, 0.6)])
def test_class_agnostic_nms_equals_slow_loop_with_one_class(seed, n, num_classes, threshold, monkeypatch):
    boxes, scores, classes = random_boxes(n, num_classes, seed)
    expected = slow_nms(boxes, scores, torch.zeros_like(classes), threshold)
    assert batched_nms(boxes, scores, classes, threshold, class_agnostic=True).tolist() == expected
    monkeypatch.setattr(utils_bbox, "_NMS_CHUNK_ELEMENTS", 40)         # the chunked path as well
    assert batched_nms(boxes, scores, classes, threshold, class_agnostic=True).tolist() == expected


def test_class_agnostic_postprocess_keeps_one_box_where_classes_disagree():
    """Two boxes on one object (IoU 0.81), one scored star-like, one triangle-like: class-aware NMS keeps both,
    across classes only the higher (0.9 * 0.8 = 0.72 against 0.8 * 0.7 = 0.56)."""
    rows = torch.tensor([[10.0, 10.0, 50.0, 50.0, 0.9, 0.8, 0.1],
                         [10.0, 10.0, 46.0, 46.0, 0.8, 0.2, 0.7],
                         [100.0, 100.0, 120.0, 120.0, 0.6, 0.9, 0.3]])[None]      # (1, 3, 5 + 2)
    aware = postprocess(rows, 0.1, 0.5)[0]
    agnostic = postprocess(rows, 0.1, 0.5, class_agnostic=True)[0]
    assert aware[:, 5].tolist() == [0, 1, 0] and aware[:, 4].tolist() == pytest.approx([0.72, 0.56, 0.54])
    assert agnostic[:, 5].tolist() == [0, 0] and agnostic[:, 4].tolist() == pytest.approx([0.72, 0.54])


def test_nms_empty_input():
    kept = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5)
    assert kept.shape == (0,) and kept.dtype == torch.long


def hand_built_outputs(input_shape, num_classes=2, scale_level_1=None):
    """Head outputs with every objectness at -20 except one cell of the stride-16 level:
    anchor slot 1 (anchor 4 = 76x55), row 3, column 5, tx=0, ty=logit(0.25), tw=ln 2, th=ln 0.5,
    objectness logit 3, class logits [-1, 2]."""
    h, w = input_shape
    outputs = []
    for stride in (32, 16, 8):
        out = torch.zeros(1, 3, 5 + num_classes, h // stride, w // stride)
        out[:, :, 4] = -20.0
        outputs.append(out)
    cell = outputs[1][0, 1, :, 3, 5]
    cell[:] = torch.tensor([0.0, math.log(1 / 3), math.log(2), math.log(0.5), 3.0, -1.0, 2.0])
    return [o.view(1, -1, o.shape[-2], o.shape[-1]) for o in outputs]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_decode_places_a_hand_built_cell():
    input_shape = (96, 128)                               # h != w catches swapped axes
    decoded = decode_outputs(hand_built_outputs(input_shape), ANCHORS, MASK, input_shape)
    assert decoded.shape == (1, 3 * (3 * 4 + 6 * 8 + 12 * 16), 7)
    # Level 1 starts after the 3*3*4 stride-32 rows; slot 1, row 3, column 5 of a 6x8 grid.
    row = decoded[0, 3 * 3 * 4 + 1 * 48 + 3 * 8 + 5]
    cx, cy, bw, bh = (0.5 + 5) * 16, (0.25 + 3) * 16, 2 * 76, 0.5 * 55     # 88, 52, 152, 27.5
    expected = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, sigmoid(3), sigmoid(-1), sigmoid(2)]
    assert row.tolist() == pytest.approx(expected, abs=1e-4)

    detections = postprocess(decoded, conf_thres=0.5, nms_thres=0.3)
    assert len(detections) == 1 and detections[0].shape == (1, 6)
    assert detections[0][0].tolist() == pytest.approx([12, 38.25, 164, 65.75, sigmoid(3) * sigmoid(2), 1], abs=1e-4)


def test_scale_x_y_widens_the_centre_range():
    input_shape = (96, 128)
    decoded = decode_outputs(hand_built_outputs(input_shape), ANCHORS, MASK, input_shape, scale_x_y=[1.0, 2.0, 1.0])
    row = decoded[0, 3 * 3 * 4 + 1 * 48 + 3 * 8 + 5]
    # s = 2: cx = (0.5 * 2 - 0.5 + 5) * 16 = 88, cy = (0.25 * 2 - 0.5 + 3) * 16 = 48.
    assert row[:4].tolist() == pytest.approx([88 - 76, 48 - 13.75, 88 + 76, 48 + 13.75], abs=1e-4)


def test_confidence_threshold_is_inclusive_and_uses_objectness_times_class():
    decoded = torch.zeros(1, 3, 7)
    decoded[0, :, :4] = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=torch.float32)
    decoded[0, :, 4:] = torch.tensor([[0.5, 0.5, 0.25],     # score 0.25, class 0
                                      [1.0, 0.2, 0.24],     # score 0.24, class 1
                                      [0.5, 0.4, 0.49]])    # score 0.245, class 1
    only_first = postprocess(decoded, conf_thres=0.25, nms_thres=0.5)[0]
    assert only_first.tolist() == [[0, 0, 10, 10, 0.25, 0]]
    everything = postprocess(decoded, conf_thres=0.2, nms_thres=0.5)[0]
    assert everything[:, 4].tolist() == pytest.approx([0.25, 0.245, 0.24])
    assert everything[:, 5].tolist() == [0, 1, 1]
    assert postprocess(decoded, conf_thres=0.2, nms_thres=0.5, max_det=2)[0].shape == (2, 6)


def test_correct_boxes_letterbox_by_hand():
    # Input (h 96, w 128), image (h 60, w 200): ratio 0.64 -> content 128 x 38, top offset (96 - 38) // 2 = 29.
    boxes = torch.tensor([[12.0, 38.25, 164.0, 65.75]])
    letterboxed = correct_boxes(boxes, (96, 128), (60, 200), letterbox_image=True)
    expected = [12 / 0.64, (38.25 - 29) * 60 / 38, 200.0, (65.75 - 29) * 60 / 38]   # x2 = 256.25 clipped to 200
    assert letterboxed[0].tolist() == pytest.approx(expected, abs=1e-4)
    stretched = correct_boxes(boxes, (96, 128), (60, 200), letterbox_image=False)
    assert stretched[0].tolist() == pytest.approx([12 * 200 / 128, 38.25 * 60 / 96, 200.0, 65.75 * 60 / 96], abs=1e-4)


def _pil_letterbox(image):
    return np.asarray(resize_image(Image.fromarray(image), (128, 96), True))


def _network_letterbox(image):
    return resize_for_input(image, (96, 128), letterbox_image=True)


@pytest.mark.parametrize("image_size", [(200, 60), (61, 150), (97, 97), (400, 300)])
@pytest.mark.parametrize("letterbox", [_pil_letterbox, _network_letterbox])
def test_correct_boxes_inverts_resize_image(image_size, letterbox):
    """A white rectangle located in the letterboxed image (upstream's PIL resize_image, or the network input's
    OpenCV one) maps back onto where it was drawn."""
    width, height = image_size
    original = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = width // 5, height // 4, width * 3 // 5, height * 3 // 4
    original[y1:y2, x1:x2] = 255
    resized = letterbox(original)
    ys, xs = np.nonzero(resized[..., 0] > 200)
    found = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
    mapped = correct_boxes(found, (96, 128), (height, width), letterbox_image=True)[0]
    scale = max(width / 128, height / 96)                 # one input pixel in original pixels
    assert mapped.tolist() == pytest.approx([x1, y1, x2, y2], abs=1.5 * scale + 0.5)


def test_decodebox_upstream_layout():
    input_shape = (96, 128)
    empty = [torch.zeros_like(o) - 20 for o in hand_built_outputs(input_shape)]
    batch = [torch.cat([a, b]) for a, b in zip(hand_built_outputs(input_shape), empty)]
    util = DecodeBox(ANCHORS, 2, input_shape, MASK)
    per_level = util.decode_box(batch)
    assert [tuple(p.shape) for p in per_level] == [(2, 36, 7), (2, 144, 7), (2, 576, 7)]
    results = util.non_max_suppression(torch.cat(per_level, 1), 2, input_shape, np.array([96, 128]),
                                       letterbox_image=False, conf_thres=0.5, nms_thres=0.4)
    assert results[1] is None
    assert results[0].shape == (1, 7)
    # [top, left, bottom, right, obj_conf, class_conf, class]: image = input size, so no rescaling.
    assert results[0][0].tolist() == pytest.approx([38.25, 12, 65.75, 128, sigmoid(3), sigmoid(2), 1], abs=1e-4)

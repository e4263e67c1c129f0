"""YOLOLoss against a slow, loop-based float64 reference written here from the specification."""
import math

import numpy as np
import pytest
import torch

from nets.focal_loss import focal_modulation, sigmoid_focal_loss
from nets.yolo_training import YOLOLoss, get_lr_scheduler
from nets.boxes import aligned_ciou, aligned_siou, box_iou, cxcywh_to_xyxy

ANCHORS = np.array([[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [72, 146],
                    [142, 110], [192, 243], [459, 401]], dtype=np.float32)
MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


def ref_ciou(p, t):
    """CIoU of two (cx, cy, w, h) boxes in plain Python floats, from the paper."""
    px1, py1, px2, py2 = p[0] - p[2] / 2, p[1] - p[3] / 2, p[0] + p[2] / 2, p[1] + p[3] / 2
    tx1, ty1, tx2, ty2 = t[0] - t[2] / 2, t[1] - t[3] / 2, t[0] + t[2] / 2, t[1] + t[3] / 2
    inter = max(0.0, min(px2, tx2) - max(px1, tx1)) * max(0.0, min(py2, ty2) - max(py1, ty1))
    union = p[2] * p[3] + t[2] * t[3] - inter
    iou = inter / union
    c2 = (max(px2, tx2) - min(px1, tx1)) ** 2 + (max(py2, ty2) - min(py1, ty1)) ** 2
    rho2 = (p[0] - t[0]) ** 2 + (p[1] - t[1]) ** 2
    v = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(p[2] / p[3])) ** 2
    alpha = v / (1 - iou + v) if v > 0 else 0.0
    return iou - rho2 / c2 - alpha * v


def ref_iou_xyxy(a, b):
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def bce(z, y):
    return max(z, 0) - z * y + math.log1p(math.exp(-abs(z)))


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def reference_assign(l, targets, B, H, W, input_shape, num_classes, iou_thresh=None, neighbours=False):
    """Per-box loop: returns {(b, k, j, i): (box_grid, class)} with later boxes overwriting. A box is positive for
    its best anchor (and, with ``iou_thresh``, every anchor of shape IoU above it) on this level, in its centre
    cell (and, with ``neighbours``, the horizontal and vertical neighbour nearest its centre, inside the grid)."""
    positives = {}
    for b, boxes in enumerate(targets):
        for cx, cy, w, h, c in boxes.tolist():
            gw, gh = w * input_shape[1], h * input_shape[0]
            ious = []
            for aw, ah in ANCHORS.tolist():
                inter = min(gw, aw) * min(gh, ah)
                ious.append(inter / (gw * gh + aw * ah - inter))
            best = int(np.argmax(ious))
            i = min(max(int(math.floor(cx * W)), 0), W - 1)
            j = min(max(int(math.floor(cy * H)), 0), H - 1)
            cells = [(j, i)]
            if neighbours:
                fx, fy = cx * W - math.floor(cx * W), cy * H - math.floor(cy * H)
                cells += [(j, i + (-1 if fx < 0.5 else 1)), (j + (-1 if fy < 0.5 else 1), i)]
            for k, anchor in enumerate(MASK[l]):
                if anchor != best and not (iou_thresh is not None and ious[anchor] > iou_thresh):
                    continue
                for cj, ci in cells:
                    if 0 <= ci < W and 0 <= cj < H:
                        positives[(b, k, cj, ci)] = ((cx * W, cy * H, w * W, h * H), int(c))
    return positives


def reference_loss(l, out, targets, num_classes, input_shape, label_smoothing=0.0, focal=False, alpha=0.25, gamma=2.0,
                   iou_thresh=None, neighbours=False, scale=1.0):
    """Loop implementation of the specified loss; returns (total, loc, conf, cls) as floats."""
    out = out.double()
    B, _, H, W = out.shape
    A = 3
    pred = out.view(B, A, 5 + num_classes, H, W).permute(0, 1, 3, 4, 2).numpy()
    anchors = ANCHORS[MASK[l]] / np.array([input_shape[1] / W, input_shape[0] / H])
    positives = reference_assign(l, targets, B, H, W, input_shape, num_classes, iou_thresh, neighbours)

    def decoded(b, k, j, i):
        p = pred[b, k, j, i]
        offset = (scale - 1) / 2
        return (sigmoid(p[0]) * scale - offset + i, sigmoid(p[1]) * scale - offset + j,
                math.exp(p[2]) * anchors[k][0], math.exp(p[3]) * anchors[k][1])

    loc_terms, cls_terms, conf_terms = [], [], []
    for (b, k, j, i), (box, c) in positives.items():
        loc_terms.append(1 - ref_ciou(decoded(b, k, j, i), box))
        if c < 0:                                     # a box of unknown class: no class term
            continue
        for n in range(num_classes):
            y = (1.0 if n == c else 0.0) * (1 - label_smoothing) + label_smoothing / num_classes
            cls_terms.append(bce(pred[b, k, j, i, 5 + n], y))
    for b in range(B):
        gts = [(cx * W - w * W / 2, cy * H - h * H / 2, cx * W + w * W / 2, cy * H + h * H / 2)
               for cx, cy, w, h, _ in targets[b].tolist()]
        for k in range(A):
            for j in range(H):
                for i in range(W):
                    positive = (b, k, j, i) in positives
                    cx, cy, bw, bh = decoded(b, k, j, i)
                    pbox = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
                    if not positive and any(ref_iou_xyxy(pbox, g) > 0.5 for g in gts):
                        continue
                    z = pred[b, k, j, i, 4]
                    term = bce(z, 1.0 if positive else 0.0)
                    if focal:
                        p = sigmoid(z)
                        term *= (alpha if positive else 1 - alpha) * ((1 - p) if positive else p) ** gamma
                    conf_terms.append(term)
    conf = float(np.mean(conf_terms)) * (10 if focal else 1)
    loc = float(np.mean(loc_terms)) if loc_terms else 0.0
    cls = float(np.mean(cls_terms)) if cls_terms else 0.0
    balance = [0.4, 1.0, 4.0][l]
    obj_ratio = 5 * input_shape[0] * input_shape[1] / 416 ** 2
    parts = (0.05 * loc, balance * obj_ratio * conf, num_classes / 80 * cls)
    return (sum(parts),) + parts


def random_targets(gen, B, n_max, num_classes, with_empty=True, border=True):
    targets = []
    for b in range(B):
        n = 0 if (with_empty and b == 0) else int(torch.randint(1, n_max + 1, (1,), generator=gen))
        cxcy = torch.rand(n, 2, generator=gen)
        wh = torch.rand(n, 2, generator=gen) * 0.6 + 0.02
        cls = torch.randint(0, num_classes, (n, 1), generator=gen).float()
        t = torch.cat([cxcy, wh, cls], 1)
        if border and n >= 2:
            t[0, :2] = torch.tensor([1.0, 0.0])       # centre exactly on the far edge / origin
            t[1, :2] = torch.tensor([0.9999, 0.99999])
        if n >= 4:
            t[3] = t[2].clone()                        # an exact duplicate position ...
            t[3, 4] = (t[2, 4] + 1) % num_classes      # ... with another class: the later one must win
        targets.append(t)
    return targets


# Training options: (YOLOLoss keywords, reference keywords); the first is upstream's loss.
OPTIONS = {"upstream": ({}, {}),
           "multi_anchor": ({"iou_thresh": 0.213}, {"iou_thresh": 0.213}),
           "scale_x_y": ({"scale_x_y": [1.2, 1.1, 1.05]}, {}),
           "neighbours": ({"neighbour_cells": True}, {"neighbours": True, "scale": 2.0}),
           "all": ({"iou_thresh": 0.213, "neighbour_cells": True, "scale_x_y": [2.0, 2.1, 2.2]},
                   {"iou_thresh": 0.213, "neighbours": True})}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("focal", [False, True])
@pytest.mark.parametrize("level", [0, 1, 2])
def test_loss_matches_loop_reference(level, focal, option):
    gen = torch.Generator().manual_seed(10 + level)
    input_shape, C, B = (96, 128), 4, 3
    H, W = input_shape[0] // [32, 16, 8][level], input_shape[1] // [32, 16, 8][level]
    out = torch.randn(B, 3 * (5 + C), H, W, generator=gen) * 1.5
    targets = random_targets(gen, B, 8, C)
    loss_kwargs, ref_kwargs = OPTIONS[option]
    loss_fn = YOLOLoss(ANCHORS, C, input_shape, focal_loss=focal, label_smoothing=0.1, **loss_kwargs)
    if "scale_x_y" in loss_kwargs:
        ref_kwargs = {**ref_kwargs, "scale": loss_kwargs["scale_x_y"][level]}
    total, terms = loss_fn.forward_with_terms(level, out, targets)
    ref = reference_loss(level, out, targets, C, input_shape, label_smoothing=0.1, focal=focal, **ref_kwargs)
    assert total.item() == pytest.approx(ref[0], rel=1e-5, abs=1e-6)
    for name, value in zip(("loc", "conf", "cls"), ref[1:]):
        assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("option", ["upstream", "all"])
def test_boxes_of_unknown_class_train_box_and_objectness_but_no_class(option):
    """Class -1 (a crop fragment, see min_class_visible) against the loop reference, which leaves such boxes'
    cells out of the class mean, also where a -1 box wins a cell from a labelled one."""
    gen = torch.Generator().manual_seed(21)
    input_shape, C, B, level = (96, 128), 4, 3, 2
    out = torch.randn(B, 3 * (5 + C), 96 // 8, 128 // 8, generator=gen) * 1.5
    targets = random_targets(gen, B, 8, C)
    for t in targets:
        t[1::2, 4] = -1                                # every second box: the duplicate at 3 wins over box 2
    loss_kwargs, ref_kwargs = OPTIONS[option]
    if "scale_x_y" in loss_kwargs:
        ref_kwargs = {**ref_kwargs, "scale": loss_kwargs["scale_x_y"][level]}
    ref = reference_loss(level, out, targets, C, input_shape, **ref_kwargs)
    terms = YOLOLoss(ANCHORS, C, input_shape, **loss_kwargs).forward_with_terms(level, out, targets)[1]
    for name, value in zip(("loc", "conf", "cls"), ref[1:]):
        assert terms[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name
    labelled = [t[t[:, 4] >= 0] for t in targets]
    assert ref[3] != pytest.approx(reference_loss(level, out, labelled, C, input_shape, **ref_kwargs)[3])


@pytest.mark.parametrize("option", list(OPTIONS))
def test_assignment_matches_loop_reference_with_collisions_and_borders(option):
    gen = torch.Generator().manual_seed(3)
    input_shape, C, B = (160, 160), 5, 4
    targets = random_targets(gen, B, 30, C)
    # Many boxes of one size in one cell: collisions on the same anchor.
    targets[1] = torch.tensor([[0.51, 0.52, 0.1, 0.1, 0], [0.52, 0.51, 0.1, 0.1, 1], [0.515, 0.515, 0.1, 0.1, 2]])
    # Boxes in the first and last cells: their outward neighbours lie outside the grid.
    targets[2][:2, :2] = torch.tensor([[0.01, 0.99], [0.999, 0.001]])
    loss_kwargs, ref_kwargs = OPTIONS[option]
    ref_kwargs = {k: v for k, v in ref_kwargs.items() if k != "scale"}
    loss_fn = YOLOLoss(ANCHORS, C, input_shape, **loss_kwargs)
    total_positives = 0
    for level, stride in enumerate((32, 16, 8)):
        H = W = 160 // stride
        boxes = torch.cat(targets)
        boxes = torch.cat([boxes[:, :4] * torch.tensor([W, H, W, H]), boxes[:, 4:]], 1)
        img = torch.repeat_interleave(torch.arange(B), torch.tensor([len(t) for t in targets]))
        pos = loss_fn._assign(level, boxes, img, B, 3, H, W)
        ref = reference_assign(level, targets, B, H, W, input_shape, C, **ref_kwargs)
        got = {}
        b, k, j, i = pos["index"]
        for n in torch.nonzero(pos["winner"]).flatten().tolist():
            box = pos["box"][n]
            got[(b[n].item(), k[n].item(), j[n].item(), i[n].item())] = (
                tuple(boxes[box, :4].tolist()), int(boxes[box, 4]))
        assert set(got) == set(ref)
        for key in ref:
            assert got[key][1] == ref[key][1]
            assert got[key][0] == pytest.approx(ref[key][0], rel=1e-5)
        assert pos["obj"].sum().item() == len(ref)
        assert set(map(tuple, pos["obj"].nonzero().tolist())) == set(ref)
        total_positives += len(ref)
    assert total_positives > 10


def test_sparse_ignore_equals_dense_all_pairs():
    """The CPU candidate-cell search must find exactly the pairs the all-pairs test finds."""
    gen = torch.Generator().manual_seed(5)
    loss_fn = YOLOLoss(ANCHORS, 3, (256, 256))
    B, A, H, W = 4, 3, 32, 32
    targets = random_targets(gen, B, 20, 3)
    boxes = torch.cat(targets)
    boxes = torch.cat([boxes[:, :4] * torch.tensor([W, H, W, H]), boxes[:, 4:]], 1)
    counts = [len(t) for t in targets]
    img = torch.repeat_interleave(torch.arange(B), torch.tensor(counts))
    # Predictions drawn around the boxes so that many pairs straddle the 0.5 threshold.
    raw = torch.randn(B, A, 8, H, W, generator=gen) * 0.7
    anchors = torch.tensor([[3.0, 4.0], [8.0, 6.0], [12.0, 14.0]])
    pred = loss_fn._decode_xyxy(raw, anchors)
    sparse = loss_fn._ignored(pred, boxes, img, counts)
    dense = loss_fn._ignored_dense(pred, cxcywh_to_xyxy(boxes[:, :4]), counts)
    # And a third, per-image loop over boxes with the generic IoU.
    looped = torch.zeros_like(sparse)
    for b, part in enumerate(torch.split(cxcywh_to_xyxy(boxes[:, :4]), counts)):
        for g in part:
            looped[b] |= (box_iou(g[None], pred[b, ..., :4].reshape(-1, 4))[0] > 0.5).view(A, H, W)
    assert looped.sum() > 50
    assert torch.equal(dense, looped)
    assert torch.equal(sparse, dense)


def test_ignore_threshold_excludes_overlapping_negatives():
    """A negative whose prediction overlaps a box with IoU > 0.5 is left out of the conf mean."""
    C, input_shape, H, W = 2, (416, 416), 13, 13
    loss_fn = YOLOLoss(ANCHORS, C, input_shape)
    out = torch.zeros(1, 3 * (5 + C), H, W)
    view = out.view(1, 3, 5 + C, H, W)
    view[0, :, 2:4] = -10.0          # every prediction tiny: overlaps nothing ...
    # ... except anchor k=1 (192x243 px) of cell (3, 3), resized to the box: centre 3.5 vs 3.25 -> IoU 0.78.
    view[0, 1, 2, 3, 3] = math.log(142 / 192)
    view[0, 1, 3, 3, 3] = math.log(110 / 243)
    view[0, :, 4] = 3.0              # confident everywhere
    # Box of exactly anchor 6's size -> positive for k=0 at cell (3, 3) of level 0.
    target = [torch.tensor([[3.25 / 13, 3.25 / 13, 142 / 416, 110 / 416, 0.0]])]
    obj_ratio = 5 * 416 * 416 / 416 ** 2
    cells = 3 * H * W
    _, terms = loss_fn.forward_with_terms(0, out, target)
    # Counted: the positive plus every negative but the ignored one.
    expected = (bce(3.0, 1.0) + (cells - 2) * bce(3.0, 0.0)) / (cells - 1)
    assert terms["conf"].item() == pytest.approx(0.4 * obj_ratio * expected, rel=1e-5)
    loss_fn.ignore_threshold = 0.8   # IoU 0.78 no longer counts as overlapping
    _, terms = loss_fn.forward_with_terms(0, out, target)
    expected = (bce(3.0, 1.0) + (cells - 1) * bce(3.0, 0.0)) / cells
    assert terms["conf"].item() == pytest.approx(0.4 * obj_ratio * expected, rel=1e-5)


def test_all_empty_batch_gives_finite_conf_only_loss():
    loss_fn = YOLOLoss(ANCHORS, 3, (64, 64), focal_loss=True)
    out = torch.randn(2, 24, 8, 8, requires_grad=True)
    loss, terms = loss_fn.forward_with_terms(2, out, [torch.zeros(0, 5), torch.zeros(0, 5)])
    assert terms["loc"].item() == 0 and terms["cls"].item() == 0
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(out.grad).all()
    # No targets argument at all behaves the same.
    assert loss_fn(2, out, None).item() == pytest.approx(loss.item())


def test_focal_gamma0_alpha_half_is_five_times_plain_conf():
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(2, 3 * 7, 6, 6, generator=gen)
    targets = random_targets(gen, 2, 6, 2)
    plain = YOLOLoss(ANCHORS, 2, (96, 96))
    focal = YOLOLoss(ANCHORS, 2, (96, 96), focal_loss=True, alpha=0.5, gamma=0)
    _, t_plain = plain.forward_with_terms(1, out, targets)
    _, t_focal = focal.forward_with_terms(1, out, targets)
    assert t_focal["conf"].item() == pytest.approx(0.5 * 10 * t_plain["conf"].item(), rel=1e-6)
    assert t_focal["loc"].item() == pytest.approx(t_plain["loc"].item())


def test_focal_value_and_gradient_match_float64_formula():
    z = torch.tensor([-6.0, -2.0, -0.3, 0.0, 0.7, 2.5, 8.0] * 2, dtype=torch.float64)
    y = torch.tensor([1.0] * 7 + [0.0] * 7, dtype=torch.float64)
    for alpha, gamma in [(0.25, 2.0), (0.6, 0.5), (0.25, 1.0)]:
        logits = z.clone().float().requires_grad_(True)
        value = sigmoid_focal_loss(logits, y.float(), alpha, gamma)
        value.sum().backward()
        p = torch.sigmoid(z)
        pt = torch.where(y > 0, p, 1 - p)
        at = torch.where(y > 0, torch.full_like(z, alpha), torch.full_like(z, 1 - alpha))
        expected = -at * (1 - pt) ** gamma * torch.log(pt)
        # d/dz of -a (1-pt)^g log(pt), with dpt/dz = pt (1-pt) (2y-1):
        dpt = pt * (1 - pt) * (2 * y - 1)
        expected_grad = -at * (-gamma * (1 - pt) ** (gamma - 1) * torch.log(pt) + (1 - pt) ** gamma / pt) * dpt
        assert torch.allclose(value.double(), expected, rtol=1e-5, atol=1e-7)
        assert torch.allclose(logits.grad.double(), expected_grad, rtol=1e-4, atol=1e-7)


def test_focal_extreme_logits_keep_finite_nonzero_gradient():
    logits = torch.tensor([30.0, -30.0, 30.0, -30.0], requires_grad=True)
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0])
    value = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(logits.grad).all()
    # Confidently wrong: loss ~ alpha_t * 30, gradient ~ alpha_t (the clipped-probability version gives 0).
    assert value[0].item() == pytest.approx(0.75 * 30, rel=1e-4)
    assert logits.grad[0].item() == pytest.approx(0.75, rel=1e-4)
    assert value[1].item() == pytest.approx(0.25 * 30, rel=1e-4)
    assert logits.grad[1].item() == pytest.approx(-0.25, rel=1e-4)
    # Confidently right: essentially no loss and no gradient.
    assert abs(value[2].item()) < 1e-20 and abs(logits.grad[2].item()) < 1e-20


def test_focal_small_gamma_at_saturated_logit_is_finite():
    logits = torch.tensor([-120.0, 120.0], requires_grad=True)
    m = focal_modulation(logits, torch.tensor([False, True]), 0.25, 0.5)
    m.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_label_smoothing_changes_cls_by_expected_amount():
    """With one positive and logits z, smoothing moves each target by ls*(1/C - y): BCE changes by -z * delta."""
    C, ls = 4, 0.2
    out = torch.zeros(1, 3 * (5 + C), 4, 4)
    cls_logits = torch.tensor([1.5, -0.5, 0.25, -2.0])
    target = [torch.tensor([[0.3, 0.3, 459 / 128, 401 / 128, 2.0]])]  # anchor 8 -> level 0, k = 2, cell (1, 1)
    out.view(1, 3, 5 + C, 4, 4)[0, 2, 5:, 1, 1] = cls_logits
    plain = YOLOLoss(ANCHORS, C, (128, 128)).forward_with_terms(0, out, target)[1]["cls"].item()
    smooth = YOLOLoss(ANCHORS, C, (128, 128), label_smoothing=ls).forward_with_terms(0, out, target)[1]["cls"].item()
    y = torch.tensor([0.0, 0.0, 1.0, 0.0])
    delta = (y * (1 - ls) + ls / C) - y
    # BCE(z, y) = softplus(z) - z*y, so the mean changes by -mean(z * delta), scaled by C/80.
    assert smooth - plain == pytest.approx((-(cls_logits * delta).mean() * C / 80).item(), rel=1e-5)
    assert plain > 0


def test_ciou_matches_hand_formula_and_siou_is_one_for_identical_boxes():
    gen = torch.Generator().manual_seed(2)
    p = torch.rand(50, 4, generator=gen) * torch.tensor([10, 10, 4, 4]) + torch.tensor([0, 0, 0.2, 0.2])
    t = torch.rand(50, 4, generator=gen) * torch.tensor([10, 10, 4, 4]) + torch.tensor([0, 0, 0.2, 0.2])
    got = aligned_ciou(p, t)
    for n in range(50):
        assert got[n].item() == pytest.approx(ref_ciou(p[n].tolist(), t[n].tolist()), abs=1e-5)
    assert torch.allclose(aligned_siou(p, p), torch.ones(50), atol=1e-5)
    s = aligned_siou(p, t)
    assert (s <= aligned_ciou(p, t) + 1.0).all() and (s < 1).all()


def test_siou_loss_runs_and_differs_from_ciou():
    gen = torch.Generator().manual_seed(4)
    out = torch.randn(2, 3 * 8, 8, 8, generator=gen, requires_grad=True)
    targets = random_targets(gen, 2, 10, 3, with_empty=False)
    ciou = YOLOLoss(ANCHORS, 3, (64, 64)).forward_with_terms(2, out, targets)[1]["loc"]
    loss, terms = YOLOLoss(ANCHORS, 3, (64, 64), iou_type="siou").forward_with_terms(2, out, targets)
    loss.backward()
    assert torch.isfinite(out.grad).all()
    assert terms["loc"].item() != pytest.approx(ciou.item())
    with pytest.raises(ValueError, match="iou_type"):
        YOLOLoss(ANCHORS, 3, (64, 64), iou_type="giou")


def _ref_iou_v(q, t):
    """IoU and the aspect term v of two (cx, cy, w, h) boxes."""
    qx1, qy1, qx2, qy2 = q[0] - q[2] / 2, q[1] - q[3] / 2, q[0] + q[2] / 2, q[1] + q[3] / 2
    tx1, ty1, tx2, ty2 = t[0] - t[2] / 2, t[1] - t[3] / 2, t[0] + t[2] / 2, t[1] + t[3] / 2
    inter = max(0, min(qx2, tx2) - max(qx1, tx1)) * max(0, min(qy2, ty2) - max(qy1, ty1))
    iou = inter / (q[2] * q[3] + t[2] * t[3] - inter)
    v = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(q[2] / q[3])) ** 2
    return iou, v


def test_ciou_alpha_is_constant_in_gradient():
    """The gradient equals finite differences of CIoU with alpha frozen at its current value."""
    base, target = [1.0, 1.0, 2.0, 1.0], [1.2, 0.9, 1.0, 2.0]
    p = torch.tensor([base], requires_grad=True)
    aligned_ciou(p, torch.tensor([target])).sum().backward()
    iou0, v0 = _ref_iou_v(base, target)
    alpha0 = v0 / (1 - iou0 + v0)

    def frozen(q):
        iou, v = _ref_iou_v(q, target)
        return ref_ciou(q, target) + (v / (1 - iou + v)) * v - alpha0 * v

    eps = 1e-6
    for d in range(4):
        hi, lo = list(base), list(base)
        hi[d] += eps
        lo[d] -= eps
        numeric = (frozen(hi) - frozen(lo)) / (2 * eps)
        assert p.grad[0, d].item() == pytest.approx(numeric, rel=1e-3, abs=1e-5)


def test_gradients_flow_to_all_three_terms():
    gen = torch.Generator().manual_seed(8)
    out = torch.randn(2, 3 * 8, 8, 8, generator=gen, requires_grad=True)
    targets = random_targets(gen, 2, 10, 3, with_empty=False)
    loss = YOLOLoss(ANCHORS, 3, (64, 64), focal_loss=True).forward(2, out, targets)
    loss.backward()
    g = out.grad.view(2, 3, 8, 8, 8)
    assert g[:, :, 0:4].abs().sum() > 0    # box
    assert g[:, :, 4].abs().sum() > 0      # objectness
    assert g[:, :, 5:].abs().sum() > 0     # classes


def test_lr_scheduler_warmup_cosine_and_steps():
    f = get_lr_scheduler("cos", 1e-2, 1e-4, 100)
    assert f(0) == pytest.approx(1e-3)                      # warm-up starts at 10%
    assert f(3) == pytest.approx(1e-2)                      # 3 warm-up epochs (5% of 100 capped at 3)
    assert f(95) == pytest.approx(1e-4) and f(99) == pytest.approx(1e-4)  # flat tail of 5 epochs
    assert f(3) > f(20) > f(50) > f(90) > 1e-4
    s = get_lr_scheduler("step", 1e-2, 1e-4, 100)
    assert s(0) == pytest.approx(1e-2) and s(99) == pytest.approx(1e-4)
    assert s(10) == pytest.approx(1e-2 * (1e-2) ** (1 / 9))


@pytest.mark.parametrize("scale_x_y", [None, [1.2, 1.1, 1.05], [2.0, 2.0, 2.0]])
def test_training_and_inference_decode_boxes_alike(scale_x_y):
    """The loss's predicted boxes (grid units, the ignore test and the box term) times the stride equal the boxes
    inference decodes (utils/deploy/decode.py) with the same scale_x_y."""
    from utils.deploy.decode import decode_levels

    gen = torch.Generator().manual_seed(5)
    input_shape, C = (96, 128), 2
    loss_fn = YOLOLoss(ANCHORS, C, input_shape, scale_x_y=scale_x_y)
    outputs = [torch.randn(2, 3 * (5 + C), input_shape[0] // s, input_shape[1] // s, generator=gen)
               for s in (32, 16, 8)]
    decoded = decode_levels(outputs, ANCHORS, MASK, input_shape, loss_fn.scale_x_y)
    for level, (out, inference) in enumerate(zip(outputs, decoded)):
        B, _, H, W = out.shape
        stride = torch.tensor([input_shape[1] / W, input_shape[0] / H] * 2)
        anchors = torch.as_tensor(ANCHORS[MASK[level]], dtype=torch.float32) / stride[:2]
        grid = loss_fn._decode_xyxy(out.view(B, 3, 5 + C, H, W), anchors, loss_fn.scale_x_y[level])[..., :4]
        torch.testing.assert_close(grid.reshape(B, -1, 4) * stride, inference[..., :4], rtol=1e-5, atol=1e-4)


def test_options_add_positives_and_bad_scales_are_refused():
    gen = torch.Generator().manual_seed(4)
    targets = random_targets(gen, 4, 12, 3, border=False)
    boxes = torch.cat(targets)
    img = torch.repeat_interleave(torch.arange(4), torch.tensor([len(t) for t in targets]))
    counts = {}
    for name in ("upstream", "multi_anchor", "neighbours"):
        loss_fn = YOLOLoss(ANCHORS, 3, (160, 160), **OPTIONS[name][0])
        counts[name] = sum(int(loss_fn._assign(l, torch.cat([boxes[:, :4] * s, boxes[:, 4:]], 1), img, 4, 3, s, s)
                               ["obj"].sum()) for l, s in enumerate((5, 10, 20)))
    assert counts["upstream"] < counts["multi_anchor"] and 2 * counts["upstream"] < counts["neighbours"]
    with pytest.raises(ValueError, match="neighbour_cells needs scale_x_y >= 2.0"):
        YOLOLoss(ANCHORS, 3, (160, 160), neighbour_cells=True, scale_x_y=[1.2, 1.1, 1.05])
    with pytest.raises(ValueError, match="one value >= 1 per level"):
        YOLOLoss(ANCHORS, 3, (160, 160), scale_x_y=[1.2, 1.1])

"""The objectness forms of YOLOLoss against float64 hand formulas: focal with RetinaNet's normalization, IoU-aware
targets (soft focal, as Quality Focal Loss), VarifocalNet's weight; their value, gradient and reductions."""
import numpy as np
import pytest
import torch

from nets.yolo_training import YOLOLoss

ANCHORS = np.loadtxt("model_data/yolo_anchors.txt", delimiter=",").reshape(-1, 2)


def cells(seed=0, shape=(2, 3, 4, 5)):
    """Logits, positives, counted cells and IoU targets of one level, as the loss sees them."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    positive = torch.rand(shape, generator=gen) < 0.15
    counted = positive | (torch.rand(shape, generator=gen) < 0.8)        # some negatives ignored
    iou = torch.where(positive, torch.rand(shape, generator=gen, dtype=torch.float64), torch.zeros((), dtype=torch.float64))
    return logits, positive, counted, iou


def hand_formula(z, positive, counted, y, focal, alpha, gamma, form, normalize, share, ratio=10.0):
    """The objectness term written out in float64 from the definitions (torch only for autograd)."""
    p = torch.sigmoid(z)
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    if focal:
        alpha_t = torch.where(positive, torch.tensor(alpha, dtype=z.dtype), torch.tensor(1 - alpha, dtype=z.dtype))
        if form == "varifocal":
            weight = torch.where(positive, y, alpha * p ** gamma)
        else:
            weight = alpha_t * (y - p).abs() ** gamma                 # = (1 - p_t) ** gamma for binary y
        bce = bce * weight
        if normalize == "positives":
            return (bce * counted).sum() / max(int(positive.sum()), 1) * 2 * share
        if normalize == "weights":
            return (bce * counted).sum() / (weight.detach() * counted).sum()       # a normalizer, not differentiated
        bce = bce * ratio
    return (bce * counted).sum() / counted.sum()


FORMS = [("bce", False, "focal", "mean", "binary"), ("focal", True, "focal", "mean", "binary"),
         ("focal_positives", True, "focal", "positives", "binary"), ("soft_focal_iou", True, "focal", "mean", "iou"),
         ("soft_focal_positives", True, "focal", "positives", "iou"), ("bce_iou", False, "focal", "mean", "iou"),
         ("varifocal", True, "varifocal", "mean", "iou"), ("varifocal_positives", True, "varifocal", "positives", "iou"),
         ("focal_weights", True, "focal", "weights", "binary"), ("soft_focal_weights", True, "focal", "weights", "iou"),
         ("varifocal_weights", True, "varifocal", "weights", "iou")]


@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("name, focal, form, normalize, target", FORMS)
def test_each_form_equals_its_float64_formula_in_value_and_gradient(name, focal, form, normalize, target, gamma):
    z64, positive, counted, iou = cells()
    share = 0.07
    loss_fn = YOLOLoss(ANCHORS, 2, (160, 160), focal_loss=focal, alpha=0.3, gamma=gamma, focal_type=form,
                       focal_normalize=normalize, obj_target=target, positive_share=[share] * 3)
    z32 = z64.float().requires_grad_()
    got = loss_fn._conf_loss(1, z32, positive, counted, None if target == "binary" else iou.float())
    got.backward()
    z = z64.clone().requires_grad_()
    y = positive.double() if target == "binary" else iou
    expected = hand_formula(z, positive, counted, y, focal, 0.3, gamma, form, normalize, share)
    expected.backward()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(z32.grad.numpy(), z.grad.numpy(), rtol=1e-4, atol=1e-8)


def test_gamma_0_alpha_half_reduces_to_bce_up_to_the_stated_constants():
    z, positive, counted, iou = cells(seed=1)
    z = z.float()
    plain = YOLOLoss(ANCHORS, 2, (160, 160))._conf_loss(0, z, positive, counted)
    own_share = float(positive.sum()) / float(counted.sum())

    def conf(**kwargs):
        loss_fn = YOLOLoss(ANCHORS, 2, (160, 160), focal_loss=True, alpha=0.5, gamma=0, **kwargs)
        return loss_fn._conf_loss(0, z, positive, counted, None if kwargs.get("obj_target") != "iou" else iou.float())

    assert conf().item() == pytest.approx(5 * plain.item(), rel=1e-6)                      # 0.5 x focal_loss_ratio 10
    # RetinaNet's normalization at the batch's own share of positives: exactly plain BCE.
    assert conf(focal_normalize="positives", positive_share=[own_share] * 3).item() == pytest.approx(plain.item(),
                                                                                                  rel=1e-5)
    # The weighted mean: plain BCE exactly, whatever the share of positives.
    assert conf(focal_normalize="weights").item() == pytest.approx(plain.item(), rel=1e-6)
    plain_iou = YOLOLoss(ANCHORS, 2, (160, 160), obj_target="iou")._conf_loss(0, z, positive, counted, iou.float())
    assert conf(obj_target="iou").item() == pytest.approx(5 * plain_iou.item(), rel=1e-6)
    # Varifocal at gamma 0 is the BCE with positives weighted by their IoU target and negatives by alpha.
    weighted = YOLOLoss(ANCHORS, 2, (160, 160))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, iou.float(), reduction="none")
    expected = (bce * torch.where(positive, iou.float(), torch.tensor(0.5)) * counted).sum() / counted.sum() * 10
    assert conf(obj_target="iou", focal_type="varifocal").item() == pytest.approx(expected.item(), rel=1e-5)
    assert weighted.focal_loss_ratio == 10


def test_iou_targets_come_from_the_predicted_boxes_detached():
    """With obj_target='iou' the positives' objectness target is the clamped IoU of their predicted box; the box
    term's gradient does not flow through it."""
    gen = torch.Generator().manual_seed(2)
    out = (torch.randn(1, 3 * 7, 10, 10, generator=gen) * 0.5).requires_grad_()
    targets = [torch.tensor([[0.5, 0.5, 0.3, 0.3, 1.0], [0.2, 0.7, 0.1, 0.2, 0.0]])]
    loss_fn = YOLOLoss(ANCHORS, 2, (320, 320), obj_target="iou")
    total, _ = loss_fn.forward_with_terms(1, out, targets)
    total.backward()
    assert torch.isfinite(out.grad).all()
    boxes = torch.cat([targets[0][:, :4] * 10, targets[0][:, 4:]], 1)
    pos = loss_fn._assign(1, boxes, torch.zeros(2, dtype=torch.long), 1, 3, 10, 10)
    assert pos["winner"].any()
    with torch.no_grad():
        pred = out.view(1, 3, 7, 10, 10)
        b, k, gj, gi = pos["index"]
        anchors = loss_fn.anchors[loss_fn.anchors_mask[1]] / 32
        p = pred[b, k, :, gj, gi]
        box = torch.stack([torch.sigmoid(p[:, 0]) + gi, torch.sigmoid(p[:, 1]) + gj,
                           torch.exp(p[:, 2]) * anchors[k, 0], torch.exp(p[:, 3]) * anchors[k, 1]], 1)
        iou = loss_fn.iou_fn(box, boxes[pos["box"], :4]).clamp(min=0)
        values = loss_fn._obj_values(pos, iou, 1, 3, 10, 10)
    for n in torch.nonzero(pos["winner"]).flatten().tolist():
        assert values[b[n], k[n], gj[n], gi[n]].item() == pytest.approx(iou[n].item())
    assert int((values > 0).sum()) <= int(pos["winner"].sum())


def test_bad_forms_are_refused():
    with pytest.raises(ValueError, match="focal_normalize must be one of mean, positives, weights"):
        YOLOLoss(ANCHORS, 2, (160, 160), focal_normalize="sum")
    with pytest.raises(ValueError, match="needs positive_share"):
        YOLOLoss(ANCHORS, 2, (160, 160), focal_loss=True, focal_normalize="positives")
    with pytest.raises(ValueError, match="obj_target must be one of binary, iou"):
        YOLOLoss(ANCHORS, 2, (160, 160), obj_target="soft")


def test_positive_shares_count_the_assigned_cells_by_hand():
    from utils.data.anchor_check import letterboxed_targets, positive_shares

    # One 320x160 image letterboxed into 160x160: scale 0.5, 40 px of grey above and below. Its 100x60 box at
    # (20, 40) becomes 50x30 at (10, 60): best of the 416-px anchors is 40x28 (index 2, stride 8).
    lines = ["/data/wide.jpg 20,40,120,100,1"]
    boxes, owners, images = letterboxed_targets(lines, {"/data/wide.jpg": (320, 160)}, (160, 160))
    np.testing.assert_allclose(boxes, [[35 / 160, 75 / 160, 50 / 160, 30 / 160, 1]], rtol=1e-6)
    assert owners.tolist() == [0] and images == 1
    loss_fn = YOLOLoss(ANCHORS, 2, (160, 160))
    shares = positive_shares(loss_fn, lines, {"/data/wide.jpg": (320, 160)}, (160, 160))
    # One positive in all, per cell of each level: 3 anchors x 5x5, 10x10, 20x20 cells.
    assert shares == pytest.approx([1 / 75, 1 / 300, 1 / 1200])
    neighbours = YOLOLoss(ANCHORS, 2, (160, 160), neighbour_cells=True)
    assert positive_shares(neighbours, lines, {"/data/wide.jpg": (320, 160)}, (160, 160))[2] == \
        pytest.approx(3 / 1200)


def test_head_biases_start_at_the_chosen_prior():
    import math
    from types import SimpleNamespace

    from nets.yolo import YoloBody
    from utils.engine.trainer import RETINANET_PRIOR, init_head_biases, objectness_prior

    model = YoloBody([[6, 7, 8], [3, 4, 5], [0, 1, 2]], 2, width_mult=0.125, depth_mult=0.33)
    init_head_biases(model, (160, 160), 2, 0.01)
    assert torch.sigmoid(model.yolo_head3[-1].bias.view(3, 7)[:, 4]).tolist() == pytest.approx([0.01] * 3)
    init_head_biases(model, (160, 160), 2)
    assert model.yolo_head1[-1].bias.view(3, 7)[0, 4].item() == pytest.approx(math.log(8 / 20 ** 2))
    cfg = SimpleNamespace(obj_prior=None, focal_loss=True, focal_normalize="positives")
    assert objectness_prior(cfg) == RETINANET_PRIOR
    assert objectness_prior(SimpleNamespace(obj_prior=None, focal_loss=True, focal_normalize="mean")) is None
    assert objectness_prior(SimpleNamespace(obj_prior=0.2, focal_loss=False, focal_normalize="mean")) == 0.2


def test_positives_normalization_divides_every_level_by_the_positives_of_all_levels():
    gen = torch.Generator().manual_seed(6)
    targets = [torch.tensor([[0.3, 0.4, 0.08, 0.1, 0.0], [0.7, 0.6, 0.1, 0.12, 1.0]])]    # small: stride-8 anchors
    loss_fn = YOLOLoss(ANCHORS, 2, (160, 160), focal_loss=True, focal_normalize="positives",
                       positive_share=[0.01, 0.005, 0.002])
    out = torch.randn(1, 3 * 7, 5, 5, generator=gen)
    n_total = loss_fn._positives_all_levels(targets[0], torch.zeros(2, dtype=torch.long), 1)
    assert int(n_total) == 2
    boxes = torch.cat([targets[0][:, :4] * 5, targets[0][:, 4:]], 1)
    assert not loss_fn._assign(0, boxes, torch.zeros(2, dtype=torch.long), 1, 3, 5, 5)["obj"].any()
    _, terms = loss_fn.forward_with_terms(0, out, targets)
    # Level 0 has no positive of its own, yet its negatives are scaled by the batch's 2 positives, not dropped.
    z = out.view(1, 3, 7, 5, 5)[:, :, 4]
    p = torch.sigmoid(z)
    negatives = -(0.75 * p ** 2 * torch.log(1 - p)).sum() / 2 * (2 * 0.01)
    expected = negatives * loss_fn.balance[0] * loss_fn.obj_ratio
    assert terms["conf"].item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_weights_normalization_keeps_bce_scale_and_moves_the_loss_to_hard_cells(gamma):
    """Equal cells weigh equally, so the weighted mean is plain BCE at any gamma; a hard negative gets a stronger
    push than under BCE, an easier one a smaller push."""
    loss_fn = YOLOLoss(ANCHORS, 2, (160, 160), focal_loss=True, alpha=0.5, gamma=gamma, focal_normalize="weights")
    plain = YOLOLoss(ANCHORS, 2, (160, 160))
    negative, counted = torch.zeros(6, dtype=torch.bool), torch.ones(6, dtype=torch.bool)
    same = torch.full((6,), -2.0)
    assert loss_fn._conf_loss(0, same, negative, counted).item() == pytest.approx(
        plain._conf_loss(0, same, negative, counted).item(), rel=1e-6)
    z = torch.tensor([-4.0, -4.0, -4.0, -4.0, -4.0, 1.0], requires_grad=True)      # one hard negative
    loss_fn._conf_loss(0, z, negative, counted).backward()
    focal_grad = z.grad.clone()
    z.grad = None
    plain._conf_loss(0, z, negative, counted).backward()
    assert focal_grad[5] > z.grad[5] and focal_grad[0] < z.grad[0]

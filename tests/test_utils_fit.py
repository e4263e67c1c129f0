"""The guarded training step: non-finite losses are skipped and counted, repeated ones stop the run."""
import numpy as np
import pytest
import torch

from nets.yolo import YoloBody
from nets.yolo_training import YOLOLoss
from utils.optim import build_optimizer
from utils.utils_fit import NONFINITE_LIMIT, NonFiniteLossError, train_one_epoch, validate

MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
ANCHORS = np.array([[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [72, 146], [142, 110], [192, 243],
                    [459, 401]], dtype=np.float32) / 4


class NaNAt(YOLOLoss):
    """YOLOLoss whose total becomes NaN at chosen calls of the level-0 term."""

    def __init__(self, bad_steps, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_steps, self.calls = set(bad_steps), 0

    def forward_with_terms(self, l, input, targets=None):
        loss, terms = super().forward_with_terms(l, input, targets)
        if l == 0:
            self.calls += 1
            if self.calls in self.bad_steps:
                loss = loss * float("nan")
        return loss, terms


def make_batches(n, gen):
    batches = []
    for _ in range(n):
        images = torch.rand(2, 3, 64, 64, generator=gen)
        targets = [torch.tensor([[0.5, 0.5, 0.3, 0.4, 1.0]]), torch.tensor([[0.3, 0.6, 0.2, 0.2, 0.0]])]
        batches.append((images, targets))
    return batches


def setup(bad_steps):
    torch.manual_seed(0)
    model = YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33)
    loss_fn = NaNAt(bad_steps, ANCHORS, 2, (64, 64))
    optimizer = build_optimizer(model, "sgd", 1e-3, 0.9, 5e-4)
    return model, loss_fn, optimizer


def test_nonfinite_step_is_skipped_and_counted():
    model, loss_fn, optimizer = setup(bad_steps={2})
    batches = make_batches(3, torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_one_epoch(model, loss_fn, batches, optimizer, torch.device("cpu"), show_progress=False)
    assert stats["nonfinite"] == 1
    assert np.isfinite(stats["loss"]) and stats["images"] == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))   # good steps did update

    # The skipped step leaves the weights exactly as they were: compare with a run of the good batches only.
    reference, ref_loss, ref_opt = setup(bad_steps=set())
    train_one_epoch(reference, ref_loss, [batches[0], batches[2]], ref_opt, torch.device("cpu"), show_progress=False)
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_repeated_nonfinite_steps_stop_with_clear_message():
    model, loss_fn, optimizer = setup(bad_steps=set(range(1, 100)))
    batches = make_batches(NONFINITE_LIMIT + 2, torch.Generator().manual_seed(2))
    with pytest.raises(NonFiniteLossError, match="learning rate") as err:
        train_one_epoch(model, loss_fn, batches, optimizer, torch.device("cpu"), show_progress=False)
    assert "fp16" in str(err.value) and "boxes" in str(err.value)


def test_validate_reports_the_three_terms():
    model, loss_fn, _ = setup(bad_steps=set())
    stats = validate(model, loss_fn, make_batches(2, torch.Generator().manual_seed(3)), torch.device("cpu"),
                     show_progress=False)
    assert stats["loss"] == pytest.approx(stats["loc"] + stats["conf"] + stats["cls"], rel=1e-5)

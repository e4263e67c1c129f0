"""The guarded training step: non-finite losses are skipped and counted, repeated ones stop the run."""
import math

import numpy as np
import pytest
import torch

from nets.yolo import YoloBody
from nets.yolo_training import YOLOLoss
from utils.engine.optim import build_optimizer
from utils.engine.epoch import NONFINITE_LIMIT, NonFiniteLossError, total_loss, train_one_epoch, validate

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


class ReadBackCounter:
    """Counts the tensor methods that copy a value to the host (and so wait for the device)."""

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))

    def _counting(self, original):
        def method(tensor, *args, **kwargs):
            self.count += 1
            return original(tensor, *args, **kwargs)
        return method


@pytest.mark.parametrize("optimizer_type", ["adam", "sgd"])
def test_training_steps_read_nothing_back_between_readbacks(monkeypatch, optimizer_type):
    from utils.engine.ema import ModelEMA

    steps = 23
    model, loss_fn, _ = setup(bad_steps={5})
    optimizer = build_optimizer(model, optimizer_type, 1e-3, 0.9, 5e-4, fused=True)   # CUDA's default
    ema = ModelEMA(model)
    batches = make_batches(steps, torch.Generator().manual_seed(4))
    counter = ReadBackCounter(monkeypatch)
    stats = train_one_epoch(model, loss_fn, batches, optimizer, torch.device("cpu"), ema=ema, accumulate=2,
                            show_progress=True, readback_every=10)
    read_backs = counter.count
    monkeypatch.undo()
    # Read-backs at steps 10, 20 and 23 (the bar and the non-finite limit), then the epoch's means and skips.
    assert read_backs <= math.ceil(steps / 10) + 2, read_backs
    assert stats["nonfinite"] == 1 and np.isfinite(stats["loss"])

    # The counter does see per-step read-backs: reading back every step costs at least one per step.
    model, loss_fn, _ = setup(bad_steps=set())
    counter = ReadBackCounter(monkeypatch)
    train_one_epoch(model, loss_fn, batches[:6], build_optimizer(model, optimizer_type, 1e-3, 0.9, 5e-4),
                    torch.device("cpu"), show_progress=False, readback_every=1)
    assert counter.count >= 6


def test_skipped_step_leaves_optimizer_state_and_ema_untouched():
    from utils.engine.ema import ModelEMA

    model, loss_fn, _ = setup(bad_steps={2})
    optimizer = build_optimizer(model, "adam", 1e-3, 0.9, 5e-4, fused=True)
    ema = ModelEMA(model)
    batches = make_batches(2, torch.Generator().manual_seed(5))
    train_one_epoch(model, loss_fn, batches[:1], optimizer, torch.device("cpu"), ema=ema, show_progress=False)
    weights = {k: v.clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    averaged = [p.clone() for p in ema.ema.parameters()]
    moments = [state["exp_avg"].clone() for state in optimizer.state.values()]
    stats = train_one_epoch(model, loss_fn, batches[1:], optimizer, torch.device("cpu"), ema=ema,
                            show_progress=False)
    assert stats["nonfinite"] == 1
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in weights.items() if k in params)
    assert all(torch.equal(a, b) for a, b in zip(averaged, ema.ema.parameters()))
    assert all(torch.equal(a, s["exp_avg"]) for a, s in zip(moments, optimizer.state.values()))
    assert all(int(s["step"]) == 1 for s in optimizer.state.values())        # the skipped step is not counted


@pytest.mark.parametrize("optimizer_type,weight_decay", [("adam", 0.0), ("adam", 5e-4), ("sgd", 5e-4)])
def test_fused_optimizer_matches_the_per_tensor_one(optimizer_type, weight_decay):
    """build_optimizer's fused kernels against torch's per-tensor (for-loop) ones on the same gradients."""
    model, loss_fn, _ = setup(bad_steps=set())
    reference = YoloBody(MASK, 2, width_mult=0.125, depth_mult=0.33)
    reference.load_state_dict(model.state_dict())
    fused = build_optimizer(model, optimizer_type, 1e-2, 0.9, weight_decay, fused=True)
    plain = build_optimizer(reference, optimizer_type, 1e-2, 0.9, weight_decay)
    assert all(group["fused"] for group in fused.param_groups)
    assert not any(group["fused"] for group in plain.param_groups)        # the CPU default
    for images, targets in make_batches(3, torch.Generator().manual_seed(6)):
        fused.zero_grad()
        loss, _ = total_loss(loss_fn, model(images), targets)
        loss.backward()
        for a, b in zip(model.parameters(), reference.parameters()):
            b.grad = a.grad.clone()
        fused.step()
        plain.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_resumed_optimizer_keeps_its_fused_kernels():
    from utils.engine.resume import load_optimizer_state

    model, loss_fn, _ = setup(bad_steps=set())
    old = build_optimizer(model, "adam", 1e-3, 0.9, 0.0)        # e.g. a checkpoint written on the CPU
    optimizer = build_optimizer(model, "adam", 1e-3, 0.9, 0.0, fused=True)
    load_optimizer_state(optimizer, old.state_dict())
    assert all(group["fused"] for group in optimizer.param_groups)
    stats = train_one_epoch(model, loss_fn, make_batches(2, torch.Generator().manual_seed(7)), optimizer,
                            torch.device("cpu"), show_progress=False)
    assert stats["nonfinite"] == 0


def test_learning_rate_scaling_and_limits_by_hand():
    from utils.engine.optim import scaled_learning_rates

    # Batch 8 of a 64-image nominal lr 8e-3 is 1e-3: Adam's upstream ceiling, so 2e-2 is clamped to it too.
    assert scaled_learning_rates(8, 8e-3, 8e-5, "adam") == pytest.approx((1e-3, 1e-5))
    assert scaled_learning_rates(8, 2e-2, 2e-4, "adam") == pytest.approx((1e-3, 1e-5))
    # lr_limits lifts the ceiling: 8 / 64 * 2e-2 = 2.5e-3; the final lr's ceiling is a hundredth of the max.
    assert scaled_learning_rates(8, 2e-2, 2e-4, "adam", [4e-3, 1e-4]) == pytest.approx((2.5e-3, 2.5e-5))
    assert scaled_learning_rates(8, 8e-2, 8e-2, "adam", [4e-3, 1e-4]) == pytest.approx((4e-3, 4e-5))
    assert scaled_learning_rates(4, 1e-2, 1e-4, "sgd") == pytest.approx((6.25e-4, 6.25e-6))

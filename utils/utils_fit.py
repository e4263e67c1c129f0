"""One epoch of training and of validation: forward, the three-level loss, guarded optimizer steps."""
import time

import torch
from tqdm import tqdm

from utils.distributed import all_ranks_true, all_reduce_sum

TERMS = ("loc", "conf", "cls")
NONFINITE_LIMIT = 10   # consecutive non-finite steps that stop the run


class NonFiniteLossError(RuntimeError):
    """Training produced only non-finite losses or gradients for NONFINITE_LIMIT steps in a row."""


def total_loss(loss_fn, outputs, targets):
    """Sum of the per-level losses; returns ``(loss, {term: detached sum over levels})``."""
    loss, terms = 0.0, dict.fromkeys(TERMS, 0.0)
    for level, output in enumerate(outputs):
        level_loss, level_terms = loss_fn.forward_with_terms(level, output, targets)
        loss = loss + level_loss
        for name in TERMS:
            terms[name] = terms[name] + level_terms[name]
    return loss, terms


class EpochMeter:
    """Sums of loss terms over an epoch, kept as device tensors until read."""

    def __init__(self, device):
        self.sums = torch.zeros(1 + len(TERMS), dtype=torch.float64, device=device)
        self.steps = 0

    def add(self, loss, terms):
        self.sums += torch.stack([loss.detach(), *(terms[n] for n in TERMS)]).double()
        self.steps += 1

    def means(self, reduce=False):
        sums = self.sums.clone()
        counts = torch.tensor([float(self.steps)], dtype=torch.float64, device=sums.device)
        if reduce:
            all_reduce_sum(sums)
            all_reduce_sum(counts)
        values = (sums / counts.clamp(min=1)).tolist()
        return dict(zip(("loss", *TERMS), values))


def _autocast(device, fp16):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=fp16 and device.type == "cuda")


def train_one_epoch(model, loss_fn, loader, optimizer, device, *, ema=None, scaler=None, fp16=False,
                    epoch=0, epochs=1, show_progress=True, accumulate=1):
    """Train for one pass over ``loader``. Returns the epoch's mean losses and counters.

    With ``accumulate`` > 1 the gradients of that many batches are averaged before each optimizer step (the
    nominal batch; the epoch's last step takes what is left). A batch whose loss is not finite adds no
    gradient, a step whose gradient is not finite is skipped (no update); both are counted, and
    NONFINITE_LIMIT in a row raise ``NonFiniteLossError``.
    """
    model.train()
    meter = EpochMeter(device)
    nonfinite = consecutive = images = pending = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"Epoch {epoch + 1}/{epochs}", disable=not show_progress, mininterval=0.5,
               dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    for step, (batch_images, targets) in enumerate(bar):
        batch_images = batch_images.to(device, non_blocking=True)
        targets = [t.to(device, non_blocking=True) for t in targets]
        with _autocast(device, fp16):
            outputs = model(batch_images)
        loss, terms = total_loss(loss_fn, outputs, targets)   # float32 even under autocast
        ok = _guarded_backward(loss / accumulate if accumulate > 1 else loss, scaler)
        if ok:
            meter.add(loss, terms)
            pending += 1
        if pending and ((step + 1) % accumulate == 0 or step + 1 == len(loader)):
            ok = _guarded_step(model, optimizer, scaler)
            optimizer.zero_grad(set_to_none=True)
            pending = 0
            if ok and ema is not None:
                ema.update(model)
        if ok:
            consecutive = 0
        else:
            nonfinite += 1
            consecutive += 1
            if consecutive >= NONFINITE_LIMIT:
                raise NonFiniteLossError(
                    f"{consecutive} training steps in a row gave a non-finite loss or gradient (epoch {epoch + 1}). "
                    "Likely causes: a learning rate that is too high (try a lower Init_lr), corrupt or degenerate "
                    "boxes in the training list, or fp16 overflow (try fp16=False).")
        images += len(batch_images)
        if show_progress:
            bar.set_postfix(_postfix(meter, optimizer, images / (time.perf_counter() - start), nonfinite,
                                     getattr(loader.dataset, "skipped", 0) if hasattr(loader, "dataset") else 0))
    bar.close()
    stats = meter.means(reduce=True)
    stats.update(nonfinite=nonfinite, images=images, seconds=time.perf_counter() - start)
    return stats


def _guarded_backward(loss, scaler):
    """Backward unless the loss is not finite. Returns whether it did."""
    # Every rank must agree, or DDP's gradient all-reduce would wait for a rank that skipped.
    if not all_ranks_true(torch.isfinite(loss.detach())):
        return False
    (scaler.scale(loss) if scaler is not None and scaler.is_enabled() else loss).backward()
    return True


def _guarded_step(model, optimizer, scaler):
    """Optimizer step unless the gradient norm is not finite. Returns whether it stepped."""
    params = [p for p in model.parameters() if p.requires_grad]
    if scaler is not None and scaler.is_enabled():
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        if not torch.isfinite(grad_norm):
            scaler.update()            # lowers the scale, as a skipped AMP step does
            return False
        scaler.step(optimizer)
        scaler.update()
        return True
    grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
    if not torch.isfinite(grad_norm):
        return False
    optimizer.step()
    return True


def _postfix(meter, optimizer, images_per_second, nonfinite, skipped):
    steps = max(meter.steps, 1)
    sums = (meter.sums / steps).tolist()
    postfix = {"loss": f"{sums[0]:.3f}", **{n: f"{v:.3f}" for n, v in zip(TERMS, sums[1:])},
               "lr": f"{optimizer.param_groups[0]['lr']:.2e}", "img/s": f"{images_per_second:.1f}"}
    if nonfinite:
        postfix["nonfinite"] = nonfinite
    if skipped:
        postfix["skipped_files"] = skipped
    return postfix


@torch.no_grad()
def validate(model, loss_fn, loader, device, *, fp16=False, show_progress=True):
    """Mean validation losses (loss and the three terms) of ``model`` over ``loader``."""
    model.eval()
    meter = EpochMeter(device)
    for batch_images, targets in tqdm(loader, desc="Validation", disable=not show_progress, mininterval=0.5,
                                      dynamic_ncols=True):
        batch_images = batch_images.to(device, non_blocking=True)
        targets = [t.to(device, non_blocking=True) for t in targets]
        with _autocast(device, fp16):
            outputs = model(batch_images)
        loss, terms = total_loss(loss_fn, outputs, targets)
        meter.add(loss, terms)
    return meter.means(reduce=True)

"""One epoch of training and of validation: forward, the three-level loss, guarded optimizer steps.

The loop never waits for the device inside a step: the finiteness guard, the skip counters and the loss sums
stay device tensors, and are read back (one ``.tolist()``) every READBACK_EVERY steps for the progress bar
and the non-finite limit, and at the epoch's end. Only optimizers without a ``found_inf`` input (see
``steps_without_sync``) still read the guard back at each step.
"""
import time

import torch
from tqdm import tqdm

from utils.engine.distributed import all_reduce_sum

TERMS = ("loc", "conf", "cls")
NONFINITE_LIMIT = 10   # consecutive skipped (non-finite) optimizer steps that stop the run
READBACK_EVERY = 10    # steps between read-backs of the loss figures and the skip counters


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
    """Sums of the finite batches' loss terms over an epoch, and their count, kept on the device until read."""

    def __init__(self, device):
        # [loss, loc, conf, cls, number of finite batches]
        self.sums = torch.zeros(2 + len(TERMS), dtype=torch.float64, device=device)

    def add(self, loss, terms):
        values = torch.stack([loss.detach(), *(terms[n] for n in TERMS)]).double()
        finite = torch.isfinite(values).all()
        self.sums += torch.cat([torch.where(finite, values, 0.0), finite.double().reshape(1)])

    @staticmethod
    def means_of(sums):
        """``{"loss", "loc", "conf", "cls": mean}`` from a read-back list of ``sums``."""
        count = max(sums[-1], 1.0)
        return dict(zip(("loss", *TERMS), (value / count for value in sums[:-1])))

    def means(self, reduce=False):
        sums = self.sums.clone()
        if reduce:
            all_reduce_sum(sums)
        return self.means_of(sums.tolist())


class SkipCounter:
    """Skipped optimizer steps and the longest run of consecutive ones, as device tensors."""

    def __init__(self, device):
        self.skipped = torch.zeros((), dtype=torch.float64, device=device)
        self.run = torch.zeros_like(self.skipped)
        self.longest = torch.zeros_like(self.skipped)

    def add(self, found_inf):
        """``found_inf``: 0-dim float tensor, 1 where the step was skipped."""
        skip = found_inf.double()
        self.skipped += skip
        self.run = (self.run + 1) * skip          # back to 0 after a step that updated the weights
        self.longest = torch.maximum(self.longest, self.run)


def _autocast(device, fp16):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=fp16 and device.type == "cuda")


def train_one_epoch(model, loss_fn, loader, optimizer, device, *, ema=None, scaler=None, fp16=False,
                    epoch=0, epochs=1, show_progress=True, accumulate=1, readback_every=READBACK_EVERY):
    """Train for one pass over ``loader``. Returns the epoch's mean losses and counters.

    With ``accumulate`` > 1 the gradients of that many batches are averaged before each optimizer step (the
    nominal batch; the epoch's last step takes what is left). A step is skipped (weights, optimizer state and
    EMA untouched) when a loss of its batches or its gradient is not finite; skipped steps are counted, and
    NONFINITE_LIMIT in a row raise ``NonFiniteLossError`` at the next read-back (at most ``readback_every``
    steps later: the skipped steps changed nothing).
    """
    model.train()
    meter, skips = EpochMeter(device), SkipCounter(device)
    bad_loss = torch.zeros((), device=device)         # 1 when a batch since the last step had a non-finite loss
    images = 0
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
        _backward(loss / accumulate if accumulate > 1 else loss, scaler)
        bad_loss = torch.maximum(bad_loss, (~torch.isfinite(loss.detach())).float())
        meter.add(loss, terms)
        if (step + 1) % accumulate == 0 or step + 1 == len(loader):
            found_inf = guarded_step(model, optimizer, scaler, bad_loss)
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model, skip=found_inf)
            skips.add(found_inf)
            bad_loss = torch.zeros_like(bad_loss)
        images += len(batch_images)
        if (step + 1) % readback_every == 0 or step + 1 == len(loader):
            figures = torch.cat([meter.sums, torch.stack([skips.skipped, skips.longest])]).tolist()
            _check_skips(figures[-1], epoch)
            if show_progress:
                bar.set_postfix(_postfix(EpochMeter.means_of(figures[:-2]), optimizer,
                                         images / (time.perf_counter() - start), int(figures[-2]),
                                         getattr(getattr(loader, "dataset", None), "skipped", 0)))
    bar.close()
    stats = meter.means(reduce=True)
    stats.update(nonfinite=int(skips.skipped.item()), images=images, seconds=time.perf_counter() - start)
    return stats


def _check_skips(longest_run, epoch):
    if longest_run >= NONFINITE_LIMIT:
        raise NonFiniteLossError(
            f"{int(longest_run)} training steps in a row gave a non-finite loss or gradient (epoch {epoch + 1}). "
            "Likely causes: a learning rate that is too high (try a lower Init_lr), corrupt or degenerate "
            "boxes in the training list, or fp16 overflow (try fp16=False).")


def _backward(loss, scaler):
    # Always backward, also for a non-finite loss: its step is skipped, and every DDP rank takes part in the
    # gradient all-reduce, so none waits for a rank that left it out.
    (scaler.scale(loss) if scaler is not None and scaler.is_enabled() else loss).backward()


def steps_without_sync(optimizer):
    """Whether ``optimizer.step`` takes the skip flag as a device tensor (the fused optimizers' ``found_inf``)."""
    return all(group.get("fused") for group in optimizer.param_groups)


def guarded_step(model, optimizer, scaler, bad_loss):
    """Optimizer step unless ``bad_loss`` is set or the gradient norm is not finite (after AMP's unscale).

    Returns ``found_inf``, a 0-dim float tensor on the device, 1 where the step was skipped. A fused optimizer
    takes it as its ``found_inf`` input and skips on the device (as GradScaler.step does for it, which this
    replaces); any other optimizer needs the flag on the host: one read-back.
    """
    amp = scaler is not None and scaler.is_enabled()
    if amp:
        scaler.unscale_(optimizer)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=bad_loss.device)
    found_inf = torch.maximum(bad_loss, (~torch.isfinite(norm)).float())
    all_reduce_sum(found_inf)             # one rank's non-finite loss skips the step on every rank
    found_inf = (found_inf > 0).float()
    if steps_without_sync(optimizer):
        optimizer.grad_scale, optimizer.found_inf = None, found_inf
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale, optimizer.found_inf
    elif not found_inf.item():
        optimizer.step()
    if amp:
        scaler.update()                   # lowers the scale after non-finite gradients
    return found_inf


def _postfix(means, optimizer, images_per_second, nonfinite, skipped):
    postfix = {name: f"{value:.3f}" for name, value in means.items()}
    postfix.update({"lr": f"{optimizer.param_groups[0]['lr']:.2e}", "img/s": f"{images_per_second:.1f}"})
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

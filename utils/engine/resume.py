"""Resumable training checkpoints: everything needed to continue a run exactly.

The checkpoint holds model, EMA, optimizer and AMP-scaler states, the epoch, the best metric,
the run folder, the RNG states and the resolved config. It is written atomically at every
epoch end (``save_dir/last_checkpoint.pth``) and on Ctrl-C / SIGTERM. The learning-rate
schedule is a function of the epoch, so its position is the epoch itself.
"""
import os
import random
import re

import numpy as np
import torch

from utils.engine.checkpoint import atomic_save, safe_load
from utils.engine.ema import unwrap
from utils.errors import UserError

CHECKPOINT_NAME = "last_checkpoint.pth"
FORMAT_VERSION = 1


class TrainingState:
    """Progress of a run: the next epoch to train, the best result so far, the run folder."""

    def __init__(self, epoch=0, best_map=None, best_val_loss=None, run_dir=None, saved=None):
        self.epoch = epoch
        self.best_map = best_map
        self.best_val_loss = best_val_loss
        self.run_dir = run_dir
        self._saved = saved          # states to restore into freshly built objects

    @property
    def resuming(self):
        return self._saved is not None

    def is_best(self, row, by_map):
        """Update the best result with an epoch's log row; True when this epoch is the new best."""
        if by_map and row.get("map50") is not None:
            if self.best_map is None or row["map50"] > self.best_map:
                self.best_map = row["map50"]
                return True
            return False
        if by_map and self.best_map is not None:
            return False
        if self.best_val_loss is None or row["val_loss"] < self.best_val_loss:
            self.best_val_loss = row["val_loss"]
            return True
        return False

    def best_description(self):
        if self.best_map is not None:
            return f"val mAP@0.5 {self.best_map:.4f}"
        return f"val loss {self.best_val_loss:.4f}"

    def restore(self, model, ema, optimizer, scaler):
        """Load the saved states into the objects of a resumed run; restores the RNG states last."""
        if self._saved is None:
            return
        saved = self._saved
        unwrap(model).load_state_dict(saved["model"])
        if ema is not None and saved.get("ema") is not None:
            ema.load_state_dict(saved["ema"])
        load_optimizer_state(optimizer, saved["optimizer"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        _set_rng_states(saved["rng"])


def load_optimizer_state(optimizer, state):
    """``optimizer.load_state_dict`` that keeps this run's choice of fused kernels (a checkpoint's param groups
    would otherwise bring back the flag of the run that wrote it)."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flag in zip(optimizer.param_groups, fused):
        group["fused"] = flag


def _rng_states():
    states = {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": repr(random.getstate())}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _numpy_state():
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
            "cached": cached}


def _set_rng_states(states):
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(_parse_python_state(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _parse_python_state(text):
    # repr of (version, tuple_of_ints, gauss_next): a literal, safe to parse without pickle.
    import ast

    return ast.literal_eval(text)


def save_training_state(save_dir, state, config, model, ema, optimizer, scaler, interrupted=False):
    """Write the resumable checkpoint atomically; returns its path."""
    path = os.path.join(save_dir, CHECKPOINT_NAME)
    atomic_save({
        "format_version": FORMAT_VERSION,
        "epoch": state.epoch,
        "interrupted": interrupted,
        "best_map": state.best_map,
        "best_val_loss": state.best_val_loss,
        "run_dir": state.run_dir,
        "model": unwrap(model).state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": _rng_states(),
        "config": {k: v for k, v in config.items() if k != "resume"},
    }, path)
    return path


def find_resume_checkpoint(save_dir):
    path = os.path.join(save_dir, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise UserError(f"resume=True but there is no {CHECKPOINT_NAME} in {save_dir}/ "
                         f"(pass --resume PATH to name a checkpoint)")
    return path


def checkpoint_epoch(path):
    """The number of finished epochs a resumable checkpoint holds (None when it cannot be read)."""
    try:
        saved = safe_load(path, map_location="cpu")
    except UserError:
        return None
    return saved.get("epoch") if isinstance(saved, dict) else None


def newest_good_weights(save_dir):
    """The periodic weight file ``ep<NNN>-...pth`` of the latest epoch that loads, or None."""
    periodic = sorted((name for name in os.listdir(save_dir) if re.match(r"ep\d+-.*\.pth$", name)), reverse=True) \
        if os.path.isdir(save_dir) else []
    for name in periodic:
        try:
            safe_load(os.path.join(save_dir, name))
        except UserError:
            continue
        return os.path.join(save_dir, name)
    return None


def load_training_state(path, device="cpu"):
    """Returns ``(TrainingState, saved config dict)`` from a resumable checkpoint (safe loading). A truncated or
    corrupt checkpoint is refused, naming the newest periodic weights that still load."""
    try:
        saved = safe_load(path, map_location="cpu")
    except UserError as err:
        good = newest_good_weights(os.path.dirname(os.path.abspath(path)))
        advice = (f"the newest good weights are {good}: start from them with --model_path {good} (a new run), "
                  f"or delete {path} to train from scratch" if good else f"no periodic weights load either; delete "
                  f"{path} to train from scratch")
        raise UserError(f"cannot resume from {path}: {err}; {advice}") from None
    if not isinstance(saved, dict) or "optimizer" not in saved or "epoch" not in saved:
        raise UserError(f"{path} is a weights file, not a resumable checkpoint; "
                         f"use --model_path {path} to start from its weights instead")
    if saved.get("interrupted"):
        print(f"Note: {path} was written when a run was interrupted mid-epoch; epoch {saved['epoch'] + 1} "
              f"restarts from the weights at the interruption.")
    state = TrainingState(epoch=saved["epoch"], best_map=saved["best_map"], best_val_loss=saved["best_val_loss"],
                          run_dir=saved["run_dir"], saved=saved)
    return state, saved["config"]

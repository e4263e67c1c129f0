"""ModelEMA against the recurrence computed by hand in float64."""
import math

import torch

from utils.engine.ema import ModelEMA


def test_ema_follows_the_decay_ramp_of_its_tau():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    start = model.weight.detach().clone()
    for tau in (2000, 100):
        with torch.no_grad():
            model.weight.copy_(start)
        ema, expected = ModelEMA(model, tau=tau), start.clone()
        for step in range(1, 31):
            with torch.no_grad():
                model.weight.add_(0.1 * step)               # the model moves every step
            decay = 0.9999 * (1 - math.exp(-step / tau))
            expected = decay * expected + (1 - decay) * model.weight.detach()
            ema.update(model)
        torch.testing.assert_close(ema.ema.weight, expected, rtol=1e-12, atol=1e-12)
    # After 1400 steps (the quick start's 70 epochs x 20 steps) tau 2000 averages little; tau 200 does.
    assert 0.9999 * (1 - math.exp(-1400 / 2000)) < 0.51 < 0.99 < 0.9999 * (1 - math.exp(-1400 / 200))

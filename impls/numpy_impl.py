"""The float64 numpy reference (harness/measure/reference.py) behind the Impl contract.

Not a contender: it is the oracle, runnable as a cell so that the runner, the result files
and the report can be exercised with no framework installed, and so that a report can put
the frameworks beside the maths they should reproduce. Only `--framework numpy` runs it.
"""
from __future__ import annotations

import numpy as np

from harness.measure import reference
from harness.measure.contract import ImplBase
from harness.measure.protocol import initial_weights
from harness.plan.errors import HarnessError
from harness.plan.spec import EVAL_BATCH


class NumpyImpl(ImplBase):
    framework = "numpy"

    def build(self, model, hyper, data, weights, device, mode, precision="float32", profile="equal"):
        self.configure(mode, precision, device, profile)
        if device != "cpu":
            raise HarnessError("the numpy reference runs on the CPU only; use --device cpu")
        if precision != "float32":
            raise HarnessError(f"the numpy reference computes in float64 whatever the precision; "
                               f"run it with --precision float32, not {precision}")
        # native init: numpy has no framework default, so it is the canonical scheme
        weights = weights if weights is not None else initial_weights(model, hyper.seed)
        self.model, self.x, self.y = model, data.x_train, data.y_train
        self.params = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.opt = reference.Optimizer(hyper)
        self.samples_per_epoch = len(self.x) // hyper.batch_size * hyper.batch_size

    def train_epoch(self, order):
        losses, self.params = reference.train_steps(self.model, self.params, self.opt, self.x, self.y, order)
        return losses

    def sync(self):
        pass

    def logits(self, x):
        out = [reference.forward(self.model, self.params, x[i:i + EVAL_BATCH])
               for i in range(0, len(x), EVAL_BATCH)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.model.num_classes), np.float32)

    def settings(self):
        return {"deviations": {"init": "the harness's canonical weights (numpy has no init of its own)",
                               "data_path": "the training arrays in memory, each step's batch gathered by index",
                               "batch_order": "the harness's permutation, last partial batch dropped",
                               "optimizer": "harness.measure.reference.Optimizer, in float64"}}

    def get_weights(self):
        return {k: v.astype(np.float32) for k, v in self.params.items()}

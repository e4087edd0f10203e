"""A toy fourth framework, plugged in from the test tree alone: its record and its impl.

FWCOMPARE_FRAMEWORKS=tests.toy_framework:RECORD makes it a framework like the others: the
runner expands, runs and records its cells, the report tables them. Its impl is multinomial
logistic regression in numpy, trained by plain SGD (no momentum): enough to learn tiny5x5.
"""
from __future__ import annotations

import numpy as np

from harness.contract import ImplBase
from harness.spec import EVAL_BATCH, HarnessError
from impls.records import Framework

RECORD = Framework("toy", "tests.toy_framework:ToyImpl", ("numpy",), modes=("step",), native_modes=("step",),
                   in_default_matrix=False, has_parity_tests=False)


class ToyImpl(ImplBase):
    framework = "toy"

    def build(self, model, hyper, data, weights, device, mode, precision="float32", profile="equal"):
        self.configure(mode, precision, device, profile)
        if [type(layer).__name__ for layer in model.layers] != ["Flatten", "Dense"]:
            raise HarnessError("the toy framework has only logistic regression")
        self.spec, self.hyper, self.x, self.y = model, hyper, data.x_train, data.y_train
        self.rng = np.random.default_rng(hyper.seed)
        features = int(np.prod(model.input_shape))
        self.w = weights["dense1.kernel"].astype(np.float64) if weights else self.rng.normal(
            0, 0.01, (features, model.num_classes))
        self.b = weights["dense1.bias"].astype(np.float64) if weights else np.zeros(model.num_classes)
        self.samples_per_epoch = len(self.x) // hyper.batch_size * hyper.batch_size

    def train_epoch(self, order):
        if self.profile == "native":  # its own order: only the step count is the harness's
            order = self.rng.permutation(len(self.x))[:order.size].reshape(order.shape)
        losses = []
        for rows in order:
            x, y = self.x[rows].reshape(len(rows), -1), self.y[rows]
            p = softmax(x @ self.w + self.b)
            losses.append(-np.log(p[np.arange(len(y)), y]).mean())
            p[np.arange(len(y)), y] -= 1
            self.w -= self.hyper.lr * x.T @ p / len(y)
            self.b -= self.hyper.lr * p.mean(axis=0)
        return np.array(losses)

    def sync(self):
        pass

    def logits(self, x):
        flat = x.reshape(len(x), -1)
        return np.concatenate([flat[i:i + EVAL_BATCH] @ self.w + self.b for i in range(0, len(x), EVAL_BATCH)]
                              or [np.zeros((0, self.spec.num_classes))]).astype(np.float32)

    def get_weights(self):
        return {"dense1.kernel": self.w.astype(np.float32), "dense1.bias": self.b.astype(np.float32)}

    def settings(self):
        return {"deviations": {"init": "the harness's canonical weights", "data_path": "numpy arrays",
                               "batch_order": "the harness's", "optimizer": "plain SGD",
                               "data_source": "the harness's"}}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

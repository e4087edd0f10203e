"""A toy fourth framework, plugged in from the test tree alone: its record and its impl.

FWCOMPARE_FRAMEWORKS=tests.toy_framework:RECORD makes it a framework like the others: the
runner and the driver expand, run and record its cells, the report tables them, and the step
parity tests hold it to the float64 oracle. Its impl is multinomial logistic regression in numpy
(float64 inside, float32 at its edges), trained by the suite's Adam or SGD with momentum; it has
no narrow precisions, so the parity tests of bf16 and tf32 are not its.
"""
from __future__ import annotations

import numpy as np

from harness.measure.contract import ImplBase
from harness.plan.errors import HarnessError
from harness.plan.frameworks import Framework
from harness.plan.spec import EVAL_BATCH

RECORD = Framework("toy", "tests.toy_framework:ToyImpl", ("numpy",), modes=("step",), native_modes=("step",),
                   in_default_matrix=False)


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
        self.m, self.v, self.t = {}, {}, 0  # the optimizer's state, per parameter

    def train_epoch(self, order):
        if self.profile == "native":  # its own order: only the step count is the harness's
            order = self.rng.permutation(len(self.x))[:order.size].reshape(order.shape)
        losses = []
        for rows in order:
            x, y = self.x[rows].reshape(len(rows), -1), self.y[rows]
            p = softmax(x @ self.w + self.b)
            losses.append(-np.log(p[np.arange(len(y)), y]).mean())
            p[np.arange(len(y)), y] -= 1
            self.step({"w": x.T @ p / len(y), "b": p.mean(axis=0)})
        return np.array(losses)

    def step(self, grads):
        """Adam (p -= lr * m_hat / (sqrt(v_hat) + eps)) or SGD with momentum (b = momentum * b + g; p -= lr * b)."""
        h = self.hyper
        self.t += 1
        for name, g in grads.items():
            if h.optimizer == "sgd":
                self.m[name] = h.momentum * self.m.get(name, 0.0) + g
                update = self.m[name]
            else:
                self.m[name] = h.beta1 * self.m.get(name, 0.0) + (1 - h.beta1) * g
                self.v[name] = h.beta2 * self.v.get(name, 0.0) + (1 - h.beta2) * g * g
                update = self.m[name] / (1 - h.beta1 ** self.t) / (np.sqrt(self.v[name] / (1 - h.beta2 ** self.t)) + h.eps)
            setattr(self, name, getattr(self, name) - h.lr * update)

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
                               "batch_order": "the harness's", "optimizer": "the suite's Adam or SGD, in numpy",
                               "data_source": "the harness's"}}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

"""Numpy float64 forward, loss, backward and optimizers for each model: the parity oracle.

Written from the maths, not from any framework, and checked against finite differences
(tests/test_reference.py), so a framework that agrees with it agrees with the maths.
Max-pooling routes a window's gradient to its first maximum in row-major order, as
torch, XLA and TensorFlow do.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness.plan.spec import Conv, Dense, Flatten, Hyper, MaxPool, ModelSpec


def _im2col(x: np.ndarray, layer: Conv) -> np.ndarray:
    """(N, H, W, C) -> (N, H', W', kh*kw*C) patches ordered (kh, kw, c) like an HWIO kernel."""
    p, k = layer.padding, layer.kernel
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    win = sliding_window_view(xp, (k, k), axis=(1, 2))  # (N, H', W', C, kh, kw)
    n, h, w, c = win.shape[:4]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n, h, w, k * k * c)


def forward(model: ModelSpec, weights: dict, x: np.ndarray, cache: list | None = None):
    """Logits (N, classes) in float64; if cache is a list, layer inputs are appended to it."""
    a = np.asarray(x, np.float64)
    for name, layer, _, _ in model.named_layers():
        if cache is not None:
            cache.append(a)
        if isinstance(layer, Conv):
            kernel = np.asarray(weights[f"{name}.kernel"], np.float64)
            a = _im2col(a, layer) @ kernel.reshape(-1, layer.filters)
            a = a + weights[f"{name}.bias"]
        elif isinstance(layer, MaxPool):
            n, h, w, c = a.shape
            s = layer.size
            a = a.reshape(n, h // s, s, w // s, s, c).max(axis=(2, 4))
        elif isinstance(layer, Flatten):
            a = a.reshape(len(a), -1)
        elif isinstance(layer, Dense):
            a = a @ np.asarray(weights[f"{name}.kernel"], np.float64)
            if layer.use_bias:
                a = a + weights[f"{name}.bias"]
        if getattr(layer, "activation", None) == "relu":
            if cache is not None:
                cache.append(a)  # pre-activation, for relu's mask
            a = np.maximum(a, 0.0)
    return a


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy on logits and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -logp[np.arange(n), labels].mean()
    grad = np.exp(logp)
    grad[np.arange(n), labels] -= 1.0
    return float(loss), grad / n


def loss_and_grads(model: ModelSpec, weights: dict, x: np.ndarray, y: np.ndarray):
    """Loss and float64 gradients of every parameter, by hand-written backprop."""
    cache: list = []
    logits = forward(model, weights, x, cache)
    loss, g = cross_entropy(logits, np.asarray(y))
    grads = {}
    for name, layer, _, _ in reversed(list(model.named_layers())):
        if getattr(layer, "activation", None) == "relu":
            g = g * (cache.pop() > 0)
        a = cache.pop()
        if isinstance(layer, Dense):
            grads[f"{name}.kernel"] = a.T @ g
            if layer.use_bias:
                grads[f"{name}.bias"] = g.sum(axis=0)
            g = g @ np.asarray(weights[f"{name}.kernel"], np.float64).T
        elif isinstance(layer, Flatten):
            g = g.reshape(a.shape)
        elif isinstance(layer, MaxPool):
            n, h, w, c = a.shape
            s = layer.size
            win = a.reshape(n, h // s, s, w // s, s, c).transpose(0, 1, 3, 5, 2, 4)
            win = win.reshape(n, h // s, w // s, c, s * s)
            first_max = np.eye(s * s)[win.argmax(axis=-1)]  # argmax takes the first maximum
            routed = first_max * g[..., None]
            g = routed.reshape(n, h // s, w // s, c, s, s).transpose(0, 1, 4, 2, 5, 3)
            g = g.reshape(n, h, w, c)
        elif isinstance(layer, Conv):
            kernel = np.asarray(weights[f"{name}.kernel"], np.float64)
            k, p = layer.kernel, layer.padding
            cols = _im2col(a, layer)
            grads[f"{name}.kernel"] = np.einsum("nhwk,nhwo->ko", cols, g).reshape(kernel.shape)
            grads[f"{name}.bias"] = g.sum(axis=(0, 1, 2))
            dcols = (g @ kernel.reshape(-1, layer.filters).T).reshape(*g.shape[:3], k, k, -1)
            n, h, w, c = a.shape
            dxp = np.zeros((n, h + 2 * p, w + 2 * p, c))
            for i in range(k):
                for j in range(k):
                    dxp[:, i:i + g.shape[1], j:j + g.shape[2], :] += dcols[:, :, :, i, j, :]
            g = dxp[:, p:p + h, p:p + w, :]
    return loss, grads


class Optimizer:
    """Adam (torch/optax form) or SGD with momentum (torch/optax form), in float64."""

    def __init__(self, hyper: Hyper):
        self.h = hyper
        self.t = 0
        self.m: dict = {}
        self.v: dict = {}

    def step(self, params: dict, grads: dict) -> dict:
        h = self.h
        self.t += 1
        new = {}
        for k, g in grads.items():
            if h.optimizer == "sgd":
                self.m[k] = h.momentum * self.m.get(k, 0.0) + g
                new[k] = params[k] - h.lr * self.m[k]
            else:
                self.m[k] = h.beta1 * self.m.get(k, 0.0) + (1 - h.beta1) * g
                self.v[k] = h.beta2 * self.v.get(k, 0.0) + (1 - h.beta2) * g * g
                m_hat = self.m[k] / (1 - h.beta1 ** self.t)
                v_hat = self.v[k] / (1 - h.beta2 ** self.t)
                new[k] = params[k] - h.lr * m_hat / (np.sqrt(v_hat) + h.eps)
        return new


def train_steps(model: ModelSpec, params: dict, opt: Optimizer, x: np.ndarray, y: np.ndarray,
                order: np.ndarray) -> tuple[np.ndarray, dict]:
    """One optimizer step per row of order: per-step losses (before each update), new params."""
    losses = []
    for batch in order:
        loss, grads = loss_and_grads(model, params, x[batch], y[batch])
        losses.append(loss)
        params = opt.step(params, grads)
    return np.array(losses), params


def trajectory(model: ModelSpec, hyper: Hyper, weights: dict, x: np.ndarray,
               y: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per-step losses over order's batches from fresh optimizer state, and the final weights."""
    params = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    return train_steps(model, params, Optimizer(hyper), x, y, order)

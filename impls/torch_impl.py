"""PyTorch: each model as an nn.Sequential, trained eagerly one step at a time."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.spec import EVAL_BATCH, Conv, Dense, Flatten, HarnessError, MaxPool, ModelSpec, check_mode

DEVICES = ("cpu", "cuda", "gpu")  # "gpu" is the harness's framework-neutral name for cuda


# ---------------------------------------------------------------- the model
def make_model(model: ModelSpec) -> nn.Sequential:
    """The spec's layers as torch modules, named like the canonical weights (conv1, dense1, ...)."""
    modules = OrderedDict()
    for name, layer, in_shape, _ in model.named_layers():
        if isinstance(layer, Conv):
            modules[name] = nn.Conv2d(in_shape[-1], layer.filters, layer.kernel, padding=layer.padding)
        elif isinstance(layer, MaxPool):
            modules[name] = nn.MaxPool2d(layer.size)
        elif isinstance(layer, Flatten):
            modules[name] = nn.Flatten()
        elif isinstance(layer, Dense):
            modules[name] = nn.Linear(in_shape[0], layer.units, bias=layer.use_bias)
        if getattr(layer, "activation", None) == "relu":
            modules[f"{name}_relu"] = nn.ReLU()
    return nn.Sequential(modules)


def first_dense_after_flatten(model: ModelSpec) -> str:
    """Name of the Dense layer whose input rows follow the flatten order."""
    names = [(name, layer) for name, layer, _, _ in model.named_layers()]
    flat = next(i for i, (_, layer) in enumerate(names) if isinstance(layer, Flatten))
    return next(name for name, layer in names[flat:] if isinstance(layer, Dense))


# ---------------------------------------------------------------- canonical <-> torch layouts
def to_torch(name: str, a: np.ndarray, flat_dense: str, flat_hwc: tuple) -> np.ndarray:
    """Canonical array -> torch parameter layout (Linear (out, in), Conv2d OIHW)."""
    if name.endswith(".bias"):
        return a
    if a.ndim == 4:  # conv HWIO -> OIHW
        return a.transpose(3, 2, 0, 1)
    if name.startswith(flat_dense + "."):  # rows (h, w, c) -> torch's NCHW flatten (c, h, w)
        a = a.reshape(*flat_hwc, -1).transpose(2, 0, 1, 3).reshape(a.shape)
    return a.T


def to_canonical(name: str, a: np.ndarray, flat_dense: str, flat_hwc: tuple) -> np.ndarray:
    """Torch parameter layout -> canonical array; the inverse of to_torch."""
    if name.endswith(".bias"):
        return a
    if a.ndim == 4:  # conv OIHW -> HWIO
        return a.transpose(2, 3, 1, 0)
    a = a.T
    if name.startswith(flat_dense + "."):  # rows (c, h, w) -> canonical (h, w, c)
        h, w, c = flat_hwc
        a = a.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(a.shape)
    return a


def torch_name(canonical: str) -> str:
    return canonical.replace(".kernel", ".weight")


# ---------------------------------------------------------------- the Impl
class TorchImpl:
    """The harness's Impl for PyTorch: eager steps over device-resident data."""
    framework = "torch"

    def build(self, model, hyper, data, weights, device, mode) -> None:
        """Model, optimizer and the training set on the device, uploaded once."""
        self.mode = check_mode(self.framework, mode)
        self.device = self._device(device)
        self.spec = model
        self.flat = (first_dense_after_flatten(model), model.flatten_input_shape())
        torch.manual_seed(hyper.seed)  # native init draws from torch's generator
        self.model = make_model(model).to(self.device)
        if weights is not None:
            state = {torch_name(k): torch.tensor(to_torch(k, np.asarray(v, np.float32), *self.flat))
                     for k, v in weights.items()}
            self.model.load_state_dict(state, strict=True)
        params = self.model.parameters()
        if hyper.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=hyper.lr, betas=(hyper.beta1, hyper.beta2),
                                              eps=hyper.eps)
        else:
            self.optimizer = torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum)
        self.x_train = self._images(data.x_train)
        self.y_train = torch.as_tensor(np.asarray(data.y_train), dtype=torch.int64, device=self.device)

    @staticmethod
    def _device(device: str) -> torch.device:
        if device not in DEVICES:
            raise HarnessError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
        if device == "cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise HarnessError(f"device {device!r} asked for, but this torch sees no CUDA GPU")
        # TF32 rounds matmul and conv inputs to 10 mantissa bits; every framework runs true
        # float32 here, and cuDNN's conv default is TF32 on.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda")

    def _images(self, x: np.ndarray) -> torch.Tensor:
        """NHWC float32 numpy -> contiguous NCHW tensor on the device."""
        x = torch.tensor(np.asarray(x, np.float32), device=self.device)  # a copy: x may be read-only
        return x.permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------ training
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch; the loss before the update, still on the device."""
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """Steps over order's rows; the per-step losses, fetched from the device once at the end."""
        self.model.train()
        order = torch.as_tensor(np.asarray(order), dtype=torch.int64, device=self.device)
        losses = [self.train_step(self.x_train[batch], self.y_train[batch]) for batch in order]
        return torch.stack(losses).cpu().numpy()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def peak_device_memory_mb(self) -> float | None:
        """Peak bytes torch's CUDA allocator handed out in this process."""
        return torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else None

    def device_name(self) -> str | None:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    # ------------------------------------------------------------ evaluation and weights
    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits for NHWC images, EVAL_BATCH rows at a time."""
        self.model.eval()
        chunks = [self.model(self._images(x[i:i + EVAL_BATCH])).cpu().numpy()
                  for i in range(0, len(x), EVAL_BATCH)]
        return np.concatenate(chunks or [np.zeros((0, self.spec.num_classes), np.float32)])

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the parameters in canonical names and layouts."""
        state = self.model.state_dict()
        return {k: np.array(to_canonical(k, state[torch_name(k)].cpu().numpy(), *self.flat),
                            dtype=np.float32, order="C")
                for k in self.spec.param_shapes()}

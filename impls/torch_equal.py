"""PyTorch, profile equal: the nn.Module classes of torch_impl from the harness's canonical
weights, stepping through the harness's batch order on a training set resident on the device,
with the optimizer settings that reproduce the float64 oracle step by step. Each mode is a
class: eager (fused optimizers), compile (torch.compile over the whole step) and cudagraph
(GPU only: GRAPH_STEPS whole steps per CUDA-graph replay). torch_impl hands each mode its
written_model, so this module never imports torch_impl.

Canonical layouts cross here too: torch's Linear weight is (out, in), its conv weight OIHW,
and it flattens NCHW as (c, h, w), so the first dense layer after a conv stack has its rows
permuted; images cross from the harness's NHWC to torch's NCHW (images_on).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.measure.contract import InputClock
from harness.plan.spec import Dense, Flatten, Hyper, ModelSpec


# ---------------------------------------------------------------- canonical <-> torch layouts
def images_on(device: torch.device, x: np.ndarray) -> torch.Tensor:
    """NHWC float32 numpy -> contiguous NCHW tensor on the device."""
    x = torch.tensor(np.asarray(x, np.float32), device=device)  # a copy: x may be read-only
    return x.permute(0, 3, 1, 2).contiguous()


def first_dense_after_flatten(model: ModelSpec) -> str:
    """Name of the Dense layer whose input rows follow the flatten order."""
    names = [(name, layer) for name, layer, _, _ in model.named_layers()]
    flat = next(i for i, (_, layer) in enumerate(names) if isinstance(layer, Flatten))
    return next(name for name, layer in names[flat:] if isinstance(layer, Dense))


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


# ---------------------------------------------------------------- the optimizers
def equal_optimizer(model: nn.Module, hyper: Hyper, fused: bool, capturable: bool = False):
    """Adam or momentum SGD with the recipe's every setting (betas, eps), the oracle's forms."""
    if hyper.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=hyper.lr, betas=(hyper.beta1, hyper.beta2),
                                eps=hyper.eps, capturable=capturable, fused=fused)
    return torch.optim.SGD(model.parameters(), lr=hyper.lr, momentum=hyper.momentum, fused=fused)


def adam_state_with_float64_steps(optimizer: torch.optim.Adam) -> None:
    """Adam's fresh state made ahead of its first step, counting steps in float64."""
    # Compiled (foreach, capturable) Adam takes 1 - beta**step on the step tensor, float32 by
    # default, where float32(0.999) leaves 1 - beta2 1.3e-5 small: early steps run ~6e-6
    # short, all one way, and the mlp's 50 Adam steps end 7.7e-3 off the float64 reference.
    # Fused Adam (eager, cudagraph) takes beta**step in double inside its kernel, and reads
    # its step as float32 there, so this is for the compiled path only.
    for group in optimizer.param_groups:
        for p in group["params"]:
            step_device = p.device if group["capturable"] else "cpu"  # where Adam keeps it
            optimizer.state[p] = {"step": torch.zeros((), dtype=torch.float64, device=step_device),
                                  "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}


# ---------------------------------------------------------------- the modes
def train_batch(model, optimizer: torch.optim.Optimizer, images, labels) -> torch.Tensor:
    """One optimizer step; the batch's loss before the update, left on the device."""
    optimizer.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.detach()


# What profile equal's precisions change from torch's defaults, per device type.
PRECISION_DEVIATIONS = {
    "cpu": {"bf16": "bfloat16 layers under torch.autocast, float32 weights and loss"},
    "cuda": {"float32": "cuDNN's convolutions in true float32 (torch's default lets them take TF32)",
             "tf32": "cuBLAS's matmuls in TF32 too (torch's default keeps them float32)",
             "bf16": "bfloat16 layers under torch.autocast, float32 weights and loss; TF32 off"},
}


class EqualEager:
    """Profile equal, mode eager: the harness's weights and order, data on the device, fused optimizers."""
    loss_every = 1

    def __init__(self, written_model: Callable[[ModelSpec], nn.Module], spec: ModelSpec, hyper: Hyper, data,
                 weights, device: torch.device, precision: str):
        """written_model: torch_impl's model builder, called once the seed is set."""
        self.device, self.precision, self.hyper = device, precision, hyper
        self.samples_per_epoch = len(data.x_train) // hyper.batch_size * hyper.batch_size
        self.input_clock = InputClock()
        self.canonical_init = weights is not None
        torch.manual_seed(hyper.seed)  # --init native draws from torch's generator
        self.model = written_model(spec).to(device)
        if weights is not None:
            flat = (first_dense_after_flatten(spec), spec.flatten_input_shape())
            self.model.load_state_dict({torch_name(k): torch.tensor(to_torch(k, np.asarray(v, np.float32), *flat))
                                        for k, v in weights.items()}, strict=True)
        self.optimizer = self.make_optimizer()
        self.x_train = images_on(device, data.x_train)
        self.y_train = torch.as_tensor(np.asarray(data.y_train), dtype=torch.int64, device=device)
        self.step = self.train_step  # what train_epoch calls each step

    def make_optimizer(self) -> torch.optim.Optimizer:
        # fused: one kernel (one loop on the CPU) updates every parameter. torch's default
        # takes a per-tensor path on the CPU, which took 2.5 of the mlp's 4.2 ms a step on
        # 2 cores when timed apart (fused: 0.4).
        return equal_optimizer(self.model, self.hyper, fused=True)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """float32 logits; under bf16 the layers run in bfloat16 under autocast (weights stay float32)."""
        # cache_enabled=False: autocast's cache of cast weights must not outlive a graph capture
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16",
                            cache_enabled=False):
            return self.model(images).float()

    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the training rows `batch`."""
        return train_batch(self.predict, self.optimizer, self.x_train[batch], self.y_train[batch])

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """Steps over order's rows; the per-step losses, fetched from the device once at the end."""
        self.model.train()
        order = torch.as_tensor(np.asarray(order), dtype=torch.int64, device=self.device)
        return torch.stack([self.step(batch) for batch in order]).cpu().numpy()

    def settings(self) -> dict:
        return {"optimizer_impl": "fused (one kernel for all parameters)", "deviations": self.deviations()}

    def deviations(self) -> dict[str, str]:
        """How this cell's training departs from the native code (torch_impl.NativeTraining)."""
        out = {"data_path": "no DataLoader: the training set lives on the device, each step gathers "
                            "the harness's batch of [0, 1] images by index (no Normalize)",
               "batch_order": "the harness's permutation, last partial batch dropped",
               "optimizer": f"{self.hyper.optimizer} with fused=True and the recipe's betas and eps "
                            "(torch's default is the per-tensor loop on the CPU)"}
        if self.canonical_init:
            out["init"] = "the harness's canonical Glorot-uniform weights, not torch's Kaiming-uniform"
        precision = PRECISION_DEVIATIONS[self.device.type].get(self.precision)
        if precision:
            out["precision"] = precision
        return out


class EqualCompiled(EqualEager):
    """Mode compile: torch.compile over the whole train step, optimizer included."""

    def __init__(self, *args):
        super().__init__(*args)
        # The whole step, but not fullgraph=True, which torch cannot do: dynamo runs zero_grad
        # eagerly, breaks at loss.backward() and torch.optim breaks on purpose around step().
        # Inductor compiles three graphs: the forward (AOTAutograd compiles its backward with
        # it), the optimizer update, and the loss.detach() tail. mode "default", as
        # "reduce-overhead" adds the CUDA graphs that mode cudagraph measures on its own;
        # dynamic=False, as every batch has the same shape.
        self.step = torch.compile(self.train_step, mode="default", dynamic=False)

    def make_optimizer(self) -> torch.optim.Optimizer:
        # Dynamo traces the foreach path, not the fused one. capturable keeps the step count
        # on the GPU, so that compiled Adam stays in the graph (dynamo sets capturable
        # itself, but only on empty states).
        optimizer = equal_optimizer(self.model, self.hyper, fused=False, capturable=self.device.type == "cuda")
        if isinstance(optimizer, torch.optim.Adam):
            adam_state_with_float64_steps(optimizer)
        return optimizer

    def settings(self) -> dict:
        # the harness gives each cell a fresh TORCHINDUCTOR_CACHE_DIR (recorded in
        # compile_cache): a warm cache would halve the first epoch's compile time
        out = {"torch_compile": "inductor, mode default, dynamic=False", "deviations": self.deviations()}
        if isinstance(self.optimizer, torch.optim.Adam):
            out["adam_step_count"] = "float64 tensor (bias corrections as exact as eager's)"
        return out

    def deviations(self) -> dict[str, str]:
        return {**super().deviations(),
                "optimizer": f"{self.hyper.optimizer}, foreach, inside the compiled step"
                             + (", step count in float64" if self.hyper.optimizer == "adam" else ""),
                "torch_compile": "torch.compile over the whole step, not the model"}


# Mode cudagraph: training steps per CUDA graph. One replay launches them all, so the host
# sends one copy, one replay and one loss copy per GRAPH_STEPS steps instead of per step.
GRAPH_STEPS = 16


class EqualGraphed(EqualEager):
    """Mode cudagraph (GPU only): GRAPH_STEPS whole train steps per CUDA-graph replay."""

    def __init__(self, *args):
        super().__init__(*args)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # steps -> graph

    def make_optimizer(self) -> torch.optim.Optimizer:
        # capturable keeps the step count on the GPU: graph replays advance it
        return equal_optimizer(self.model, self.hyper, fused=True, capturable=True)

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """GRAPH_STEPS steps per replay: their batch indices in, one replay, their losses out."""
        self.model.train()
        order = torch.as_tensor(np.asarray(order), dtype=torch.int64, device=self.device)
        losses = torch.empty(len(order), device=self.device)
        for start in range(0, len(order), GRAPH_STEPS):
            n = min(GRAPH_STEPS, len(order) - start)
            graph = self.graphs.get(n) or self._capture(order[start:start + n])
            self.static_order[:n].copy_(order[start:start + n])
            graph.replay()
            losses[start:start + n].copy_(self.static_losses[:n])
        return losses.cpu().numpy()

    def _capture(self, batches: torch.Tensor) -> torch.cuda.CUDAGraph:
        """A graph of len(batches) train_steps; the first capture warms up on a side stream first."""
        if not self.graphs:
            self._warm_up(batches[0])
        n = len(batches)
        graph = torch.cuda.CUDAGraph()
        # Nothing runs while capturing: the graph records the n steps, each reading its batch
        # from static_order and writing its loss into static_losses. zero_grad(set_to_none) in
        # train_batch lets each backward allocate its grads in the graph's private pool.
        with torch.cuda.graph(graph):
            for i in range(n):
                self.static_losses[i].copy_(self.train_step(self.static_order[i]))
        self.graphs[n] = graph  # the epoch's tail, if any, gets a graph of its own
        return graph

    def _warm_up(self, batch: torch.Tensor) -> None:
        """Run three steps on a side stream, then undo their updates."""
        self.static_order = torch.empty((GRAPH_STEPS, len(batch)), dtype=batch.dtype, device=self.device)
        self.static_losses = torch.empty(GRAPH_STEPS, device=self.device)
        initial = [p.detach().clone() for p in self.model.parameters()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        # Warm-up makes cuBLAS handles, autograd's streams and the optimizer's state, so that
        # the capture records the steady step, not a first step's lazy set-up
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "This instance was constructed with capturable=True")
            for _ in range(3):
                self.train_step(batch)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():  # the warm-up trained: back to the initial weights and a fresh state
            for p, value in zip(self.model.parameters(), initial):
                p.copy_(value)
            # all-zero state is exactly a fresh one: Adam's m, v and step count start at zero,
            # and SGD's b = momentum * 0 + g is the first step's b = g
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()

    def settings(self) -> dict:
        return {**super().settings(),
                "cuda_graph": f"{GRAPH_STEPS} training steps per graph replay, optimizer included"}

    def deviations(self) -> dict[str, str]:
        return {**super().deviations(), "cuda_graph": f"{GRAPH_STEPS} whole steps captured per CUDA-graph replay"}


EQUAL_MODES = {"eager": EqualEager, "compile": EqualCompiled, "cudagraph": EqualGraphed}

"""PyTorch: each model as an nn.Sequential; one train step, run eagerly, compiled or CUDA-graphed."""
from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.spec import EVAL_BATCH, Conv, Dense, Flatten, HarnessError, ImplBase, MaxPool, ModelSpec

# Mode cudagraph: training steps per CUDA graph. One replay launches them all, so the host
# sends one copy, one replay and one loss copy per GRAPH_STEPS steps instead of per step.
GRAPH_STEPS = 16


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


# ---------------------------------------------------------------- the Impl
class TorchImpl(ImplBase):
    """The harness's Impl for PyTorch: steps over device-resident data, eager, compiled or graphed."""
    framework = "torch"

    def build(self, model, hyper, data, weights, device, mode, precision="float32", profile="equal") -> None:
        """Model, optimizer and the training set on the device, uploaded once."""
        self.configure(mode, precision, device, profile)
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
        # fused: one kernel (one loop on the CPU) updates every parameter. torch's default
        # takes a per-tensor path on the CPU, which took 2.5 of the mlp's 4.2 ms a step on
        # 2 cores when timed apart (fused: 0.4). Dynamo traces the foreach path instead, so
        # compile keeps that.
        fused = self.mode != "compile"
        if hyper.optimizer == "adam":
            # capturable keeps the step count on the GPU: graph replays advance it, and compiled
            # Adam stays in the graph (dynamo sets capturable itself, but only on empty states)
            capturable = self.mode != "eager" and self.device.type == "cuda"
            self.optimizer = torch.optim.Adam(params, lr=hyper.lr, betas=(hyper.beta1, hyper.beta2),
                                              eps=hyper.eps, capturable=capturable, fused=fused)
            if self.mode == "compile":
                adam_state_with_float64_steps(self.optimizer)
        else:
            self.optimizer = torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum, fused=fused)
        self.x_train = self._images(data.x_train)
        self.y_train = torch.as_tensor(np.asarray(data.y_train), dtype=torch.int64, device=self.device)
        self.run_step = self.train_step  # what train_epoch calls each step
        if self.mode == "compile":
            # The whole step, but not fullgraph=True, which torch 2.13 cannot do: dynamo runs
            # zero_grad eagerly, breaks at loss.backward() and torch.optim breaks on purpose
            # around step(). Inductor compiles three graphs: the forward (AOTAutograd compiles
            # its backward with it), the optimizer update, and the loss.detach() tail. mode
            # "default", as "reduce-overhead" adds the CUDA graphs that mode cudagraph measures
            # on its own; dynamic=False, as every batch has the same shape.
            self.run_step = torch.compile(self.train_step, mode="default", dynamic=False)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # mode cudagraph: steps -> graph

    def _device(self, device: str) -> torch.device:
        if device == "cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise HarnessError(f"device {device!r} asked for, but this torch sees no CUDA GPU")
        # TF32 rounds matmul and conv inputs to 10 mantissa bits: on only for precision tf32
        # (cuDNN's conv default is TF32 on, cuBLAS's off).
        torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = self.precision == "tf32"
        return torch.device("cuda")

    def _autocast(self):
        """bf16: the layers in bfloat16 under autocast (weights stay float32); else nothing."""
        # cache_enabled=False: autocast's cache of cast weights must not outlive a graph capture
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16",
                              cache_enabled=False)

    def _images(self, x: np.ndarray) -> torch.Tensor:
        """NHWC float32 numpy -> contiguous NCHW tensor on the device."""
        x = torch.tensor(np.asarray(x, np.float32), device=self.device)  # a copy: x may be read-only
        return x.permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------ training
    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the training rows `batch`; the loss before the update, on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.model(self.x_train[batch])
        loss = F.cross_entropy(logits.float(), self.y_train[batch])
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """Steps over order's rows; the per-step losses, fetched from the device once at the end."""
        self.model.train()
        order = torch.as_tensor(np.asarray(order), dtype=torch.int64, device=self.device)
        if self.mode == "cudagraph":
            return self._replay_epoch(order).cpu().numpy()
        return torch.stack([self.run_step(batch) for batch in order]).cpu().numpy()

    # ------------------------------------------------------------ mode cudagraph
    def _replay_epoch(self, order: torch.Tensor) -> torch.Tensor:
        """GRAPH_STEPS steps per replay: their batch indices in, one replay, their losses out."""
        losses = torch.empty(len(order), device=self.device)
        for start in range(0, len(order), GRAPH_STEPS):
            n = min(GRAPH_STEPS, len(order) - start)
            graph = self.graphs.get(n) or self._capture(order[start:start + n])
            self.static_order[:n].copy_(order[start:start + n])
            graph.replay()
            losses[start:start + n].copy_(self.static_losses[:n])
        return losses

    def _capture(self, batches: torch.Tensor) -> torch.cuda.CUDAGraph:
        """A graph of len(batches) train_steps; the first capture warms up on a side stream first."""
        if not self.graphs:
            self._warm_up(batches[0])
        n = len(batches)
        graph = torch.cuda.CUDAGraph()
        # Nothing runs while capturing: the graph records the n steps, each reading its batch
        # from static_order and writing its loss into static_losses. zero_grad(set_to_none) in
        # train_step lets each backward allocate its grads in the graph's private pool.
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

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def peak_device_memory_mb(self) -> float | None:
        """Peak bytes torch's CUDA allocator handed out in this process."""
        return torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else None

    def device_name(self) -> str | None:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    def settings(self) -> dict:
        """What a mode changes beyond its name, recorded beside its numbers."""
        out = {}
        if self.mode == "compile":
            # the harness gives each cell a fresh TORCHINDUCTOR_CACHE_DIR (recorded in
            # compile_cache): a warm cache would halve the first epoch's compile time
            out["torch_compile"] = "inductor, mode default, dynamic=False"
            if isinstance(self.optimizer, torch.optim.Adam):
                out["adam_step_count"] = "float64 tensor (bias corrections as exact as eager's)"
        else:
            out["optimizer_impl"] = "fused (one kernel for all parameters)"
        if self.mode == "cudagraph":
            out["cuda_graph"] = f"{GRAPH_STEPS} training steps per graph replay, optimizer included"
        return out

    # ------------------------------------------------------------ evaluation and weights
    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits for NHWC images, EVAL_BATCH rows at a time."""
        self.model.eval()
        with self._autocast():
            chunks = [self.model(self._images(x[i:i + EVAL_BATCH])).float().cpu().numpy()
                      for i in range(0, len(x), EVAL_BATCH)]
        return np.concatenate(chunks or [np.zeros((0, self.spec.num_classes), np.float32)])

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the parameters in canonical names and layouts."""
        state = self.model.state_dict()
        return {k: np.array(to_canonical(k, state[torch_name(k)].cpu().numpy(), *self.flat),
                            dtype=np.float32, order="C")
                for k in self.spec.param_shapes()}

"""PyTorch: the models as nn.Module classes, trained in two profiles.

- native: what a PyTorch user writes. torchvision's MNIST through a DataLoader, torch's own
  initialisation, torch.optim's stock Adam or SGD, torch's default precision; the model run
  eagerly or as torch.compile(model).
- equal: the same classes from the harness's canonical weights, stepping through the
  harness's batch order on a training set resident on the device, with the optimizer
  settings that reproduce the float64 oracle step by step; eager, compiled or CUDA-graphed.
"""
from __future__ import annotations

import itertools
import tempfile
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.contract import ImplBase
from harness.spec import EVAL_BATCH, Dense, Flatten, HarnessError, Hyper, ModelSpec


# ---------------------------------------------------------------- the models
# Parameters are named as the canonical weights are (dense1, conv1, ...), so that loading
# them is a rename of .kernel to .weight and a transposition.
class Logistic(nn.Module):
    """Flatten, then one linear layer: multinomial logistic regression."""

    def __init__(self, in_features: int = 784, num_classes: int = 10, bias: bool = True):
        super().__init__()
        self.dense1 = nn.Linear(in_features, num_classes, bias=bias)

    def forward(self, x):
        return self.dense1(torch.flatten(x, 1))


# mlp: begin
class MLP(nn.Module):
    """784 -> 784 relu -> 16 relu -> 10."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.dense1 = nn.Linear(in_features, 784)
        self.dense2 = nn.Linear(784, 16)
        self.dense3 = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.dense1(x))
        x = F.relu(self.dense2(x))
        return self.dense3(x)
# mlp: end


class CNN(nn.Module):
    """Two 3x3 convolutions (4 and 8 filters), each with relu and 2x2 max-pooling, then linear."""

    def __init__(self, in_channels: int = 1, image_size: tuple[int, int] = (28, 28), num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, kernel_size=3, padding=1)
        height, width = image_size
        self.dense1 = nn.Linear(8 * (height // 4) * (width // 4), num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.dense1(torch.flatten(x, 1))


class SmallMLP(nn.Module):
    """784 -> 30 relu -> 10: the small net of the 3-vs-7 and small-subset recipes."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.dense1 = nn.Linear(in_features, 30)
        self.dense2 = nn.Linear(30, num_classes)

    def forward(self, x):
        return self.dense2(F.relu(self.dense1(torch.flatten(x, 1))))


class LinearStack(nn.Module):
    """Linear layers of the given widths with no activation between them (the mnist-study family)."""

    def __init__(self, in_features: int, widths: tuple[int, ...], num_classes: int = 10):
        super().__init__()
        sizes = (in_features, *widths, num_classes)
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
            self.add_module(f"dense{i}", nn.Linear(n_in, n_out))

    def forward(self, x):
        x = torch.flatten(x, 1)
        for layer in self.children():
            x = layer(x)
        return x


def written_model(spec: ModelSpec) -> nn.Module:
    """The class written above for a model name, sized for the spec's input shape and classes."""
    height, width, channels = spec.input_shape
    features, classes = height * width * channels, spec.num_classes
    if spec.name.startswith("study"):
        widths = tuple(layer.units for layer in spec.layers if isinstance(layer, Dense))[:-1]
        return LinearStack(features, widths, classes)
    return {"logistic": lambda: Logistic(features, classes),
            "toy25": lambda: Logistic(features, classes, bias=False),
            "mlp": lambda: MLP(features, classes),
            "mlp30": lambda: SmallMLP(features, classes),
            "cnn": lambda: CNN(channels, (height, width), classes)}[spec.name]()


# ---------------------------------------------------------------- profile native: a user's code
# The seeds' transforms: a PIL image to a [0, 1] tensor, then MNIST's training mean and std.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def mnist_loader(data, batch_size: int, transform) -> torch.utils.data.DataLoader:
    """torchvision's MNIST over the cell's training set, shuffled, as the seeds load it."""
    from torchvision import datasets

    from harness.data_files import Raw, write_idx_folder

    if data.spec.normalize:
        raise HarnessError("profile native's torch cells normalise as torchvision's users do "
                           "(transforms.Normalize); run them on data without normalize")

    def stored(x):  # the harness's float32 images back to the uint8 they were read as
        return np.rint(x[..., 0] * 255).astype(np.uint8)

    raw = Raw(stored(data.x_train), data.y_train.astype(np.uint8), stored(data.x_test),
              data.y_test.astype(np.uint8), source=data.source)
    # Written into the cell's scratch folder ($TMPDIR) and read offline, as a user's
    # datasets.MNIST(root, download=True) reads its files once they are there; MNIST keeps
    # the arrays in memory, so the folder can go at once.
    with tempfile.TemporaryDirectory(prefix="torchvision-") as root:
        train_set = datasets.MNIST(write_idx_folder(raw, root), train=True, download=False, transform=transform)
    return torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True)


def stock_optimizer(model: nn.Module, hyper: Hyper) -> torch.optim.Optimizer:
    """torch.optim's Adam or SGD with torch's defaults: only lr and SGD's momentum from the recipe."""
    if hyper.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=hyper.lr)
    return torch.optim.SGD(model.parameters(), lr=hyper.lr, momentum=hyper.momentum)


def train_batch(model, optimizer: torch.optim.Optimizer, images, labels) -> torch.Tensor:
    """One optimizer step; the batch's loss before the update, left on the device."""
    optimizer.zero_grad()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.detach()


class NativeTraining:
    """Profile native: torch's init, its stock optimizer, torchvision's MNIST through a DataLoader."""

    def __init__(self, spec: ModelSpec, hyper: Hyper, data, device: torch.device, mode: str):
        from torchvision import transforms

        torch.manual_seed(hyper.seed)  # torch's own init and the DataLoader's shuffle draw from it
        self.device, self.mode = device, mode
        self.model = written_model(spec).to(device)
        # Evaluation calls self.model: the compiled one would compile again for each new batch shape
        self.forward = torch.compile(self.model) if mode == "compile" else self.model
        self.optimizer = stock_optimizer(self.model, hyper)
        self.normalize = transforms.Normalize(MNIST_MEAN, MNIST_STD)
        self.loader = mnist_loader(data, hyper.batch_size, transforms.Compose([transforms.ToTensor(), self.normalize]))
        self.whole_epoch = len(data.x_train) // hyper.batch_size
        # The DataLoader keeps the last partial batch (drop_last=False), so an epoch trains
        # every row, not steps * batch of them.
        self.samples_per_epoch = len(data.x_train)

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        """The user's loop over the loader; the harness's order gives only how many steps.

        A whole epoch (order's steps = full batches) runs the loader to its end, last partial
        batch included; fewer steps (a test's) stop it early.
        """
        self.model.train()
        batches = self.loader if len(order) == self.whole_epoch else itertools.islice(self.loader, len(order))
        losses = [train_batch(self.forward, self.optimizer, images.to(self.device), labels.to(self.device))
                  for images, labels in batches]
        return torch.stack(losses).cpu().numpy()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of [0, 1] images, normalised as the user's transform normalises them."""
        return self.model(self.normalize(images))

    def settings(self) -> dict:
        defaults = {k: v for k, v in self.optimizer.defaults.items() if k in ("lr", "betas", "eps", "momentum")}
        return {"optimizer": f"torch.optim.{type(self.optimizer).__name__}, torch's defaults: {defaults}",
                "input_pipeline": "torchvision.datasets.MNIST (IDX files, offline), ToTensor + Normalize"
                                  f"({MNIST_MEAN}, {MNIST_STD}), DataLoader(shuffle=True), last partial batch kept",
                "torch_compile": "torch.compile(model), defaults" if self.mode == "compile" else "off",
                "deviations": {"loss_readback": "each step's loss stays on the device until the epoch ends "
                                                "(a user's loss.item() would sync every step)"}}


# ---------------------------------------------------------------- profile equal: canonical <-> torch layouts
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


def images_on(device: torch.device, x: np.ndarray) -> torch.Tensor:
    """NHWC float32 numpy -> contiguous NCHW tensor on the device."""
    x = torch.tensor(np.asarray(x, np.float32), device=device)  # a copy: x may be read-only
    return x.permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------- profile equal: the optimizers
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


# ---------------------------------------------------------------- profile equal: the modes
# What profile equal's precisions change from torch's defaults, per device type.
PRECISION_DEVIATIONS = {
    "cpu": {"bf16": "bfloat16 layers under torch.autocast, float32 weights and loss"},
    "cuda": {"float32": "cuDNN's convolutions in true float32 (torch's default lets them take TF32)",
             "tf32": "cuBLAS's matmuls in TF32 too (torch's default keeps them float32)",
             "bf16": "bfloat16 layers under torch.autocast, float32 weights and loss; TF32 off"},
}

class EqualEager:
    """Profile equal, mode eager: the harness's weights and order, data on the device, fused optimizers."""

    def __init__(self, spec: ModelSpec, hyper: Hyper, data, weights, device: torch.device, precision: str):
        self.device, self.precision, self.hyper = device, precision, hyper
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
        """How this cell's training departs from the native code above."""
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


# ---------------------------------------------------------------- the harness's Impl
class TorchImpl(ImplBase):
    """The harness's Impl for PyTorch: one training object per profile and mode, evaluated alike."""
    framework = "torch"

    def build(self, model, hyper, data, weights, device, mode, precision="float32", profile="equal") -> None:
        """The profile's training (model, optimizer, data) on the device."""
        self.configure(mode, precision, device, profile)
        self.device = self._device(device)
        self.spec = model
        if self.profile == "native":
            self.training = NativeTraining(model, hyper, data, self.device, self.mode)
            self.samples_per_epoch = self.training.samples_per_epoch
        else:
            self.training = EQUAL_MODES[self.mode](model, hyper, data, weights, self.device, self.precision)

    def _device(self, device: str) -> torch.device:
        if device == "cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise HarnessError(f"device {device!r} asked for, but this torch sees no CUDA GPU")
        if self.precision != "default":
            # TF32 rounds matmul and conv inputs to 10 mantissa bits: on only for precision
            # tf32 (cuDNN's conv default is TF32 on, cuBLAS's off). default keeps torch's.
            torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
            torch.backends.cudnn.allow_tf32 = self.precision == "tf32"
        return torch.device("cuda")

    def train_epoch(self, order: np.ndarray) -> np.ndarray:
        return self.training.train_epoch(order)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def peak_device_memory_mb(self) -> float | None:
        """Peak bytes torch's CUDA allocator handed out in this process."""
        return torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else None

    def device_name(self) -> str | None:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    def settings(self) -> dict:
        """What the profile and mode change beyond their names, recorded beside their numbers."""
        return self.training.settings()

    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits for NHWC images, EVAL_BATCH rows at a time."""
        self.training.model.eval()
        chunks = [self.training.predict(images_on(self.device, x[i:i + EVAL_BATCH])).float().cpu().numpy()
                  for i in range(0, len(x), EVAL_BATCH)]
        return np.concatenate(chunks or [np.zeros((0, self.spec.num_classes), np.float32)])

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the parameters in canonical names and layouts."""
        state = self.training.model.state_dict()
        flat = (first_dense_after_flatten(self.spec), self.spec.flatten_input_shape())
        return {k: np.array(to_canonical(k, state[torch_name(k)].cpu().numpy(), *flat), dtype=np.float32, order="C")
                for k in self.spec.param_shapes()}

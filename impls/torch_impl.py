"""PyTorch: the models as nn.Module classes, trained in two profiles.

- native: pytorch/examples' mnist/main.py as it runs: torchvision's MNIST with ToTensor and
  Normalize through the example's DataLoader (on an accelerator num_workers=1,
  persistent_workers, pin_memory and shuffle; on the CPU its defaults: no shuffle), torch's
  own initialisation, torch.optim's stock Adam or SGD, torch's default precision, and the
  example's train(): loss.item() every LOG_INTERVAL batches, the host sync it pays. The model
  runs eagerly or as torch.compile(model).
- equal: impls/torch_equal.py: these classes from the harness's canonical weights on a
  training set resident on the device; eager, compiled or CUDA-graphed.
"""
from __future__ import annotations

import itertools
import tempfile

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.data.formats import Raw, write_idx_folder
from harness.measure.contract import ImplBase, InputClock
from harness.plan.errors import HarnessError
from harness.plan.spec import EVAL_BATCH, Hyper, ModelSpec
from impls.torch_equal import EQUAL_MODES, first_dense_after_flatten, images_on, to_canonical, torch_name
from impls.widths import widths


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

    def __init__(self, in_features: int = 784, hidden1: int = 784, hidden2: int = 16, num_classes: int = 10):
        super().__init__()
        self.dense1 = nn.Linear(in_features, hidden1)
        self.dense2 = nn.Linear(hidden1, hidden2)
        self.dense3 = nn.Linear(hidden2, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.dense1(x))
        x = F.relu(self.dense2(x))
        return self.dense3(x)
# mlp: end


class CNN(nn.Module):
    """Two 3x3 convolutions (4 and 8 filters), each with relu and 2x2 max-pooling, then linear."""

    def __init__(self, in_channels: int = 1, image_size: tuple[int, int] = (28, 28), filters1: int = 4,
                 filters2: int = 8, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(filters1, filters2, kernel_size=3, padding=1)
        height, width = image_size
        self.dense1 = nn.Linear(filters2 * (height // 4) * (width // 4), num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.dense1(torch.flatten(x, 1))


class SmallMLP(nn.Module):
    """784 -> 30 relu -> 10: the small net of the 3-vs-7 and small-subset recipes."""

    def __init__(self, in_features: int = 784, hidden: int = 30, num_classes: int = 10):
        super().__init__()
        self.dense1 = nn.Linear(in_features, hidden)
        self.dense2 = nn.Linear(hidden, num_classes)

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
    """The class written above for a model name, sized by the spec (widths, input shape, classes)."""
    w = widths(spec)
    if spec.name.startswith("study"):
        return LinearStack(w.features, w.hidden, w.classes)
    return {"logistic": lambda: Logistic(w.features, w.classes),
            "toy25": lambda: Logistic(w.features, w.classes, bias=False),
            "mlp": lambda: MLP(w.features, *w.hidden, w.classes),
            "mlp30": lambda: SmallMLP(w.features, *w.hidden, w.classes),
            "cnn": lambda: CNN(w.channels, w.image_size, *w.filters, w.classes)}[spec.name]()


# ---------------------------------------------------------------- profile native: pytorch/examples' mnist
# The example's transform: a PIL image to a [0, 1] tensor, then MNIST's training mean and std.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
# The example's DataLoader settings on an accelerator; on the CPU it passes the batch size alone.
ACCELERATOR_LOADER = {"num_workers": 1, "persistent_workers": True, "pin_memory": True, "shuffle": True}
# The example's --log-interval: batches between two loss.item() reads.
LOG_INTERVAL = 10
# Native modes: how the model runs (the example runs it eagerly), and what that departs from it.
NATIVE_FORWARD = {"eager": lambda model: model, "compile": torch.compile}
NATIVE_MODE_DEVIATIONS = {"eager": {}, "compile": {"torch_compile": "torch.compile(model), which the example "
                                                                    "does not use"}}


def mnist_loader(data, batch_size: int, transform, device: torch.device) -> torch.utils.data.DataLoader:
    """torchvision's MNIST over the cell's training set, in the example's DataLoader."""
    from torchvision import datasets

    if data.spec.normalize:
        raise HarnessError("profile native's torch cells normalise as torchvision's users do "
                           "(transforms.Normalize); run them on data without normalize")

    def stored(x):  # the harness's float32 images back to the uint8 they were read as
        return np.rint(x[..., 0] * 255).astype(np.uint8)

    raw = Raw(stored(data.x_train), data.y_train.astype(np.uint8), stored(data.x_test),
              data.y_test.astype(np.uint8), source=data.source)
    # Written into the cell's scratch folder ($TMPDIR) and read offline, as the example's
    # datasets.MNIST(root, download=True) reads its files once they are there; MNIST keeps
    # the arrays in memory, so the folder can go at once.
    with tempfile.TemporaryDirectory(prefix="torchvision-") as root:
        train_set = datasets.MNIST(write_idx_folder(raw, root), train=True, download=False, transform=transform)
    train_kwargs = {"batch_size": batch_size}
    if device.type != "cpu":
        train_kwargs.update(ACCELERATOR_LOADER)
    return torch.utils.data.DataLoader(train_set, **train_kwargs)


def stock_optimizer(model: nn.Module, hyper: Hyper) -> torch.optim.Optimizer:
    """torch.optim's Adam or SGD with torch's defaults: only lr and SGD's momentum from the recipe."""
    if hyper.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=hyper.lr)
    return torch.optim.SGD(model.parameters(), lr=hyper.lr, momentum=hyper.momentum)


def train(model, device, train_loader, optimizer, clock: InputClock) -> list[float]:
    """The example's train(): one step per batch; every LOG_INTERVAL batches the loss, read with .item()."""
    model.train()
    losses = []
    for batch_idx, (data, target) in enumerate(clock.batches(train_loader)):
        with clock.fetching():
            data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % LOG_INTERVAL == 0:
            losses.append(loss.item())  # the example prints it here: a host sync every LOG_INTERVAL batches
    return losses


class NativeTraining:
    """Profile native: torch's init, its stock optimizer, the example's loader and train()."""
    loss_every = LOG_INTERVAL

    def __init__(self, spec: ModelSpec, hyper: Hyper, data, device: torch.device, mode: str):
        from torchvision import transforms

        torch.manual_seed(hyper.seed)  # torch's own init (and the loader's shuffle on a GPU) draw from it
        self.device, self.mode, self.hyper = device, mode, hyper
        self.model = written_model(spec).to(device)
        # Evaluation calls self.model: the compiled one would compile again for each new batch shape
        self.forward = NATIVE_FORWARD[mode](self.model)
        self.optimizer = stock_optimizer(self.model, hyper)
        self.normalize = transforms.Normalize(MNIST_MEAN, MNIST_STD)
        self.loader = mnist_loader(data, hyper.batch_size, transforms.Compose([transforms.ToTensor(), self.normalize]),
                                   device)
        self.whole_epoch = len(data.x_train) // hyper.batch_size
        # The DataLoader keeps the last partial batch (drop_last=False), so an epoch trains
        # every row, not steps * batch of them.
        self.samples_per_epoch = len(data.x_train)
        self.input_clock = InputClock("the DataLoader's next() and each batch's copy to the device (.to(device))")

    def train_epoch(self, order: np.ndarray) -> list[float]:
        """The example's train() over the loader; the harness's order gives only how many steps.

        A whole epoch (order's steps = full batches) runs the loader to its end, last partial
        batch included; fewer steps (a test's, the overhead probe's) stop it early.
        """
        steps = None if len(order) == self.whole_epoch else len(order)
        return train(self.forward, self.device, itertools.islice(self.loader, steps), self.optimizer,
                     self.input_clock)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of [0, 1] images, normalised as the example's transform normalises them."""
        return self.model(self.normalize(images))

    def settings(self) -> dict:
        defaults = {k: v for k, v in self.optimizer.defaults.items() if k in ("lr", "betas", "eps", "momentum")}
        loader = {k: getattr(self.loader, k) for k in ("batch_size", "num_workers", "persistent_workers",
                                                       "pin_memory")}
        shuffled = isinstance(self.loader.sampler, torch.utils.data.RandomSampler)
        return {"optimizer": f"torch.optim.{type(self.optimizer).__name__}, torch's defaults: {defaults}",
                "input_pipeline": "torchvision.datasets.MNIST (IDX files, offline), ToTensor + Normalize"
                                  f"({MNIST_MEAN}, {MNIST_STD}), DataLoader({loader}, shuffle={shuffled}), "
                                  "last partial batch kept",
                "deviations": self.deviations()}

    def deviations(self) -> dict[str, str]:
        """How this cell departs from pytorch/examples' mnist/main.py."""
        out = {"data_source": "torchvision's datasets.MNIST reads IDX files the harness writes from its "
                              "checksummed cache (download=False); the example downloads them",
               "logits": "the models end in logits and train with F.cross_entropy; the example's Net ends in "
                         "log_softmax and trains with F.nll_loss (the same loss)",
               "optimizer": f"the recipe's torch.optim.{type(self.optimizer).__name__} at lr {self.hyper.lr}, "
                            "not the example's Adadelta(lr=1.0) with StepLR(gamma=0.7)",
               "logging": f"loss.item() every {LOG_INTERVAL} batches, as the example reads it, kept instead of "
                          "printed",
               "evaluation": "the harness evaluates the model's logits after each epoch, not the example's test()"}
        return {**out, **NATIVE_MODE_DEVIATIONS[self.mode]}


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
        else:
            self.training = EQUAL_MODES[self.mode](written_model, model, hyper, data, weights, self.device,
                                                   self.precision)
        self.samples_per_epoch = self.training.samples_per_epoch
        self.loss_every = self.training.loss_every
        self.input_clock = self.training.input_clock

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

    def train_epoch(self, order: np.ndarray):
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

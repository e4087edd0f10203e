"""The MNIST MLP (784-784-16-10) trained as pytorch/examples' mnist/main.py trains its Net, without
the harness: the loop that profile native's torch cell runs (impls/torch_impl.py), written out.

    python -m impls.plain.torch_example ~/.cache/fwcompare/mnist.npz --device cuda

torchvision's datasets.MNIST, read offline from IDX files this program writes from the .npz
into a temporary folder (the example downloads them), with ToTensor and
Normalize((0.1307,), (0.3081,)); the example's DataLoader settings (on an accelerator
num_workers=1, persistent_workers, pin_memory and shuffle; on the CPU the batch size alone,
so no shuffle); torch's own initialisation; torch.optim.Adam(lr=1e-3) in place of the
example's Adadelta; the example's train(), loss.item() every 10 batches, the last partial
batch kept; its test() once, after the last epoch. The model ends in logits and trains with
F.cross_entropy (the example: log_softmax and F.nll_loss, the same loss). Prints one JSON
line (impls/plain/cli.py).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision import datasets, transforms

from impls.plain import cli

LOG_INTERVAL = 10  # the example's --log-interval: batches between two loss.item() reads
TEST_BATCH_SIZE = 1000  # the example's --test-batch-size
# The files datasets.MNIST(root, download=False) reads from <root>/MNIST/raw, unzipped.
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


class Net(nn.Module):
    """784 -> 784 relu -> 16 relu -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 784)
        self.fc2 = nn.Linear(784, 16)
        self.fc3 = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def write_idx(arrays: dict[str, np.ndarray], root: str) -> str:
    """The .npz's uint8 arrays as the IDX files the example downloads: a magic of two zero bytes,
    0x08 (unsigned bytes) and the number of dimensions, each dimension a big-endian uint32, the bytes."""
    raw = Path(root, "MNIST", "raw")
    raw.mkdir(parents=True)
    for key, name in IDX_FILES.items():
        array = np.ascontiguousarray(arrays[key], np.uint8)
        header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
        (raw / name).write_bytes(header + array.tobytes())
    return root


def train(model, device, train_loader, optimizer) -> list[float]:
    """The example's train(): one step per batch; every LOG_INTERVAL batches the loss, read with .item()."""
    model.train()
    losses = []
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % LOG_INTERVAL == 0:
            losses.append(loss.item())  # the example prints it; kept here, as stdout is the JSON line's
    return losses


def test(model, device, test_loader) -> float:
    """The example's test(): the share of test images whose largest logit is their label."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            pred = model(data).argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    return correct / len(test_loader.dataset)


def main() -> None:
    args = cli.parse_args("torch", modes=("example",), program="example")
    if args.device == "cuda" and not torch.cuda.is_available():
        cli.fail("--device cuda, but this torch sees no CUDA GPU")
    use_accel = args.device == "cuda"
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    train_kwargs = {"batch_size": args.batch_size}
    test_kwargs = {"batch_size": TEST_BATCH_SIZE}
    if use_accel:
        accel_kwargs = {"num_workers": 1, "persistent_workers": True, "pin_memory": True, "shuffle": True}
        train_kwargs.update(accel_kwargs)
        test_kwargs.update(accel_kwargs)

    transform = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize((0.1307,), (0.3081,)),
    ])
    # datasets.MNIST reads its files into memory at once, so the folder can go after it
    with tempfile.TemporaryDirectory(prefix="torchvision-") as root:
        write_idx(dict(zip(IDX_FILES, cli.read_npz(args.data, args.limit))), root)
        dataset1 = datasets.MNIST(root, train=True, download=False, transform=transform)
        dataset2 = datasets.MNIST(root, train=False, download=False, transform=transform)
    train_loader = torch.utils.data.DataLoader(dataset1, **train_kwargs)
    test_loader = torch.utils.data.DataLoader(dataset2, **test_kwargs)

    model = Net().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    epoch_s = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        train(model, device, train_loader, optimizer)
        if use_accel:
            torch.cuda.synchronize()
        epoch_s.append(time.perf_counter() - start)

    accuracy = test(model, device, test_loader)
    cli.report("torch", args, epoch_s, len(dataset1), accuracy, cli.versions("torch", "torchvision"))


if __name__ == "__main__":
    main()

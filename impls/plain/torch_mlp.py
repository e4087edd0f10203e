"""The MNIST MLP (784-784-16-10) in plain PyTorch, as a PyTorch user writes it, without the harness.

    python -m impls.plain.torch_mlp ~/.cache/fwcompare/mnist.npz --mode graph --device cuda

Modes: eager, one optimizer step per batch, the training set on the device; graph (GPU
only), that step captured once in a CUDA graph and replayed for every batch, as in
PyTorch's CUDA-graph notes (whole-network capture). torch's own initialisation, torch.optim's
Adam with its defaults (lr 1e-3). Prints one JSON line (impls/plain/cli.py).
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

from impls.plain import cli


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 784), nn.ReLU(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def capture_step(model, optimizer, static_images, static_labels) -> torch.cuda.CUDAGraph:
    """The train step on the static batch tensors as a CUDA graph; replay() runs it."""
    side = torch.cuda.Stream()  # warm-up on a side stream, as the notes say: lazy set-up stays out of the graph
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            train_step(model, optimizer, static_images, static_labels)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        train_step(model, optimizer, static_images, static_labels)
    return graph


def main() -> None:
    args = cli.parse_args("torch", modes=("eager", "graph"))
    if args.mode == "graph" and args.device != "cuda":
        cli.fail("mode graph captures a CUDA graph: run it with --device cuda on a GPU machine")
    if args.device == "cuda" and not torch.cuda.is_available():
        cli.fail("--device cuda, but this torch sees no CUDA GPU")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = (torch.as_tensor(array, device=device)
                                        for array in cli.load_mnist(args.data, args.limit))
    y_train, y_test = y_train.long(), y_test.long()  # cross_entropy takes int64 labels

    model = make_model().to(device)
    # capturable: Adam keeps its step count on the GPU, so that graph replays advance it
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=args.mode == "graph")
    steps = len(x_train) // args.batch_size
    if args.mode == "graph":
        static_images, static_labels = x_train[:args.batch_size].clone(), y_train[:args.batch_size].clone()
        graph = capture_step(model, optimizer, static_images, static_labels)

    epoch_s = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        # whole batches only: a graph replays one shape
        for batch in torch.randperm(len(x_train), device=device)[:steps * args.batch_size].view(steps, -1):
            if args.mode == "graph":
                static_images.copy_(x_train[batch])
                static_labels.copy_(y_train[batch])
                graph.replay()
            else:
                train_step(model, optimizer, x_train[batch], y_train[batch])
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_s.append(time.perf_counter() - start)

    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    cli.report("torch", args, epoch_s, steps * args.batch_size, accuracy, cli.versions("torch"))


if __name__ == "__main__":
    main()

"""Training throughput of the bslr engine against a standard PyTorch loop, side by side.

For each setting (model, data set, batch size) one fresh process builds the same model and data twice:

- reference: what a typical CIFAR training script does. A Dataset that returns one PIL image (or one
  signal) per index, torchvision transforms per item (random crop with 4-pixel padding, horizontal flip,
  ToTensor, Normalize), a shuffling DataLoader (workers and pinned memory on CUDA), eager fp32,
  torch.optim.SGD.
- project: bslr's own training core (`bslr.train.train_steps` and `bslr.train.evaluate` with a learner of
  `bslr.learners` on `bslr.data.MemoryData`): uint8 data on the device, batched crop and flip, seeded
  randperm, the engine options of `training` (precision, TF32, channels_last, compile). With `--pack K`,
  also packs of K learning rates with each learner of `--learners` (serial, stacked), and with
  `--slots N`, N concurrent project processes on one device.

Both run `--warmup` steps, then `--steps` timed steps (CUDA synchronised). Images per second count every
model's images (a pack of K at batch size B trains K x B per step). The data are random, in the shapes
and dtypes of the real sets: throughput does not depend on pixel values.

    python benchmarks/throughput.py --quick                # CPU: MNIST-1D settings, CIFAR models at 16
    python benchmarks/throughput.py --project-grid config/paper.yaml --pack 20 --slots 4

Writes results/benchmarks/throughput.csv (and projection.csv with --project-grid) and prints both tables.
Speed is measured here, never in tests; docs/performance.md records each run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

COLUMNS = ["engine", "model", "dataset", "batch_size", "device", "precision", "images_per_s", "step_ms"]
EXTRA_COLUMNS = ["runs", "options", "train_images_per_s", "epoch_images", "train_flop_per_image"]
MNIST1D_SETTINGS = [(model, "mnist1d", bs) for model in ("mlp", "cnn1d") for bs in (16, 64, 256)]
CIFAR_SETTINGS = [(model, "cifar10", bs) for model in ("resnet110", "vgg19") for bs in (16, 128, 320)]
TEST_SIZE = {"mnist1d": 1000, "mnist": 10000, "cifar10": 10000, "cifar100": 10000, "imagenet": 50000}
# Dense peaks of an H200 as measured (bf16; fp32 runs on TF32 tensor cores at about half of it): the
# FLOP floor of a grid is its training FLOPs at this rate. Other devices need --peak-tflops.
H200_PEAK_TFLOPS = {"bf16": 790.0, "fp32": 395.0}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ArrayImages(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's __getitem__ on arrays: one PIL image per index, then transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class ArraySignals(torch.utils.data.Dataset):
    """A per-item Dataset for MNIST-1D signals, as a typical script wraps numpy arrays."""

    def __init__(self, signals: np.ndarray, labels: np.ndarray) -> None:
        self.signals, self.labels = signals, labels

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int):
        return torch.from_numpy(self.signals[index]).unsqueeze(0), int(self.labels[index])


def random_data(dataset: str, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from bslr.catalog import BUILTIN_DATASETS

    spec, rng = BUILTIN_DATASETS[dataset], np.random.default_rng(seed)
    labels = rng.integers(0, spec.num_classes, size=count)
    if dataset == "mnist1d":
        return rng.standard_normal((count, spec.input_shape[-1]), dtype=np.float32), labels
    channels, height, width = spec.input_shape
    return rng.integers(0, 256, size=(count, height, width, channels), dtype=np.uint8), labels  # HWC, as CIFAR


def split_sizes(dataset: str, batch_size: int, args: argparse.Namespace) -> tuple[int, int]:
    """(train, test) images per epoch: MNIST-1D's real 4,000 and 1,000; for CIFAR-shaped data
    `--heavy-steps` batches and a fifth as many test images (CIFAR's 50,000 to 10,000)."""
    if dataset == "mnist1d":
        return 4000, 1000
    train = args.heavy_steps * batch_size
    return train, max(train // 5, 1)


class Timer:
    """Wall time of the timed epochs, split into the training loops and the rest (evaluation)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.train, self.total, self.steps = device, 0.0, 0.0, 0

    def epochs(self, count: int, train, evaluate) -> None:
        for _ in range(count):
            synchronize(self.device)
            started = time.perf_counter()
            self.steps += train()
            synchronize(self.device)
            trained = time.perf_counter()
            evaluate()
            synchronize(self.device)
            self.train += trained - started
            self.total += time.perf_counter() - started


def timed_epochs(device: torch.device, args: argparse.Namespace, train, evaluate) -> Timer:
    """`--warmup-epochs` untimed epochs, then `--epochs` timed ones."""
    Timer(device).epochs(args.warmup_epochs, train, evaluate)
    timer = Timer(device)
    timer.epochs(args.epochs, train, evaluate)
    return timer


def reference_loaders(dataset, batch_size, device, workers, sizes):
    """A typical CIFAR script's loaders: per-item transforms, a shuffling training loader, evaluation
    loaders over the train and test sets; workers and pinned memory as the script's defaults have them."""
    from torchvision import transforms

    from bslr.catalog import BUILTIN_DATASETS

    spec = BUILTIN_DATASETS[dataset]
    (train_x, train_y), (test_x, test_y) = random_data(dataset, sizes[0]), random_data(dataset, sizes[1], seed=1)
    if dataset == "mnist1d":
        train_set, train_eval, test_set = (
            ArraySignals(x, y) for x, y in ((train_x, train_y), (train_x, train_y), (test_x, test_y))
        )
    else:
        normalise = [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
        augment = transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *normalise]
        )
        train_set = ArrayImages(train_x, train_y, augment)
        train_eval = ArrayImages(train_x, train_y, transforms.Compose(normalise))
        test_set = ArrayImages(test_x, test_y, transforms.Compose(normalise))
    pin = device.type == "cuda"
    train = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers, pin_memory=pin
    )
    evaluation = [
        torch.utils.data.DataLoader(data, batch_size=1000, num_workers=workers, pin_memory=pin)
        for data in (train_eval, test_set)
    ]
    return train, evaluation


def time_reference(model_name, dataset, batch_size, device, args) -> Timer:
    """The reference loop over whole epochs: DataLoader training steps, then evaluation of both sets."""
    from bslr.catalog import BUILTIN_DATASETS, BUILTIN_MODELS
    from bslr.models import build_model

    spec = BUILTIN_DATASETS[dataset]
    train_loader, eval_loaders = reference_loaders(
        dataset, batch_size, device, args.workers, split_sizes(dataset, batch_size, args)
    )
    torch.manual_seed(0)
    model = build_model(BUILTIN_MODELS[model_name], spec.input_shape, spec.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def train() -> int:
        model.train()
        steps = 0
        for inputs, targets in train_loader:
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        return steps

    @torch.no_grad()
    def evaluate() -> None:
        model.eval()
        for loader in eval_loaders:
            correct = torch.zeros((), device=device)
            for inputs, targets in loader:
                inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                correct += (model(inputs).argmax(1) == targets).sum()
            correct.item()

    return timed_epochs(device, args, train, evaluate)


def memory_data(dataset: str, sizes: tuple[int, int], device: torch.device):
    """bslr.data.MemoryData over random data of the set's shape, as load_dataset would build it."""
    from bslr.catalog import BUILTIN_DATASETS
    from bslr.data import MemoryData

    spec = BUILTIN_DATASETS[dataset]
    (train_x, train_y), (test_x, test_y) = random_data(dataset, sizes[0]), random_data(dataset, sizes[1], seed=1)
    y_train, y_test = torch.from_numpy(train_y).to(device), torch.from_numpy(test_y).to(device)
    if dataset == "mnist1d":
        x_train, x_test = (torch.from_numpy(x).unsqueeze(1).to(device) for x in (train_x, test_x))
        return MemoryData(x_train, y_train, x_test, y_test)
    x_train, x_test = (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device) for x in (train_x, test_x))
    return MemoryData(
        x_train,
        y_train,
        x_test,
        y_test,
        mean=torch.tensor(spec.mean, device=device).view(1, -1, 1, 1),
        std=torch.tensor(spec.std, device=device).view(1, -1, 1, 1),
        crop_flip=True,
        augment_generator=torch.Generator(device=device).manual_seed(0),
    )


def engine_settings(args: argparse.Namespace, precision: str, compile_mode: str) -> dict[str, Any]:
    return {
        "precision": precision,
        "tf32": args.tf32,
        "channels_last": args.channels_last,
        "compile": False if compile_mode == "false" else compile_mode,
    }


def project_setup(model_name, dataset, batch_size, device, args, settings):
    """bslr's engine options resolved and applied, the data on the device, the seeded initial model."""
    from bslr.catalog import BUILTIN_DATASETS, BUILTIN_MODELS
    from bslr.config import RunSpec
    from bslr.engine import configure_backends, resolve_engine
    from bslr.models import build_model

    spec = BUILTIN_DATASETS[dataset]
    run = RunSpec.of(
        dict(experiment="benchmark", model=model_name, dataset=dataset, batch_size=batch_size, lr=0.01, seed=0)
        | dict(learner="serial", momentum=0.0, weight_decay=0.0, augment="standard", device=str(device))
        | dict(mlp_hidden=[100, 100], data_root="", download=False)
        | settings
    )
    engine = resolve_engine(run, device, len(spec.input_shape))
    configure_backends(engine)
    data = memory_data(dataset, split_sizes(dataset, batch_size, args), device)
    torch.manual_seed(0)
    return engine, data, build_model(BUILTIN_MODELS[model_name], spec.input_shape, spec.num_classes).to(device)


def time_project(
    model_name, dataset, batch_size, device, args, settings, learner="serial", pack=1
) -> tuple[Timer, Any]:
    """bslr's training core over whole epochs: `train_steps` then `evaluate` with a learner of `pack` runs."""
    from bslr.config import UpdateRule
    from bslr.learners import build_learner
    from bslr.train import evaluate, train_steps

    engine, data, initial = project_setup(model_name, dataset, batch_size, device, args, settings)
    rules = [UpdateRule(lr=0.01 * (index + 1)) for index in range(pack)]
    model = build_learner(learner, initial, rules, engine)
    order = torch.Generator().manual_seed(0)

    def train() -> int:
        return sum(1 for _ in train_steps(model, data, batch_size, order))

    return timed_epochs(device, args, train, lambda: evaluate(model, data, 1000)), engine


def train_flop_per_image(model_name: str, dataset: str) -> float:
    """FLOPs of one forward and backward pass per image, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from bslr.catalog import BUILTIN_DATASETS, BUILTIN_MODELS
    from bslr.models import build_model

    spec = BUILTIN_DATASETS[dataset]
    model = build_model(BUILTIN_MODELS[model_name], spec.input_shape, spec.num_classes)
    inputs = torch.randn(2, *spec.input_shape)
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(inputs), torch.zeros(2, dtype=torch.int64)).backward()
    return counter.get_total_flops() / 2


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    return f"cpu ({model}, {torch.get_num_threads()} threads)"


def measure_setting(args: argparse.Namespace, model: str, dataset: str, batch_size: int) -> list[dict[str, Any]]:
    """Every engine on one setting, in this process."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    train_images = split_sizes(dataset, batch_size, args)[0]
    common = dict(model=model, dataset=dataset, batch_size=batch_size, device=device_name(device))
    common["train_flop_per_image"] = train_flop_per_image(model, dataset)
    rows = []

    def add(timer: Timer, runs: int, **row) -> None:
        images = runs * timer.steps * batch_size  # images trained, over all packed models
        row.update(common, runs=runs, step_ms=1000 * timer.train / timer.steps)
        row["images_per_s"] = images / timer.total
        row["train_images_per_s"] = images / timer.train
        row["epoch_images"] = train_images
        rows.append(row)

    if not args.no_reference:
        options = f"DataLoader, {args.workers} workers, eager"
        add(
            time_reference(model, dataset, batch_size, device, args),
            1,
            engine="reference",
            precision="fp32",
            options=options,
        )
    for precision in args.precision:
        for compile_mode in args.compile:
            settings = engine_settings(args, precision, compile_mode)
            timer, engine = time_project(model, dataset, batch_size, device, args, settings)
            options = f"channels_last={engine.channels_last}, tf32={engine.tf32}, compile={engine.compile}"
            add(timer, 1, engine="project", precision=precision, options=options)
            for learner in args.learners if args.pack > 1 else []:
                timer, _ = time_project(model, dataset, batch_size, device, args, settings, learner, args.pack)
                add(timer, args.pack, engine="project", precision=precision, options=f"{learner} pack, {options}")
    return rows


def run_isolated(args: argparse.Namespace, setting: tuple[str, str, int], extra: list[str] | None = None) -> list[dict]:
    """One setting in a fresh Python process, so that no cache or allocator state carries over."""
    command = [sys.executable, __file__, "--one", json.dumps(setting), *sys.argv[1:], *(extra or [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        raise SystemExit(f"setting {setting} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_slots(args: argparse.Namespace, setting: tuple[str, str, int]) -> dict[str, Any]:
    """N processes of the project engine at once on one device: the `gpu_slots` way of packing."""
    command = [sys.executable, __file__, "--one", json.dumps(setting), *sys.argv[1:], "--no-reference", "--pack", "1"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(args.slots)]
    rows = [json.loads(process.communicate()[0].strip().splitlines()[-1])[0] for process in processes]
    summed = {key: sum(row[key] for row in rows) for key in ("images_per_s", "train_images_per_s")}
    return dict(
        rows[0],
        **summed,
        runs=args.slots,
        options=f"{args.slots} processes, " + rows[0]["options"],
        step_ms=statistics.median(row["step_ms"] for row in rows),
    )


def peak_flops(device: str, precision: str, given: float | None) -> float:
    """FLOP/s of the FLOP floor: --peak-tflops, or the H200's measured peak; NaN (no floor) otherwise."""
    if given:
        return given * 1e12
    return H200_PEAK_TFLOPS[precision] * 1e12 if "H200" in device else float("nan")


def project_grid(results: pd.DataFrame, grid_path: str, peak_tflops: float | None = None) -> pd.DataFrame:
    """GPU-hours of a grid's runs (training and per-epoch evaluation), per model and engine variant,
    and the share of that which the FLOP floor is.

    Whole-epoch throughput is interpolated linearly in batch size between the measured batch sizes (and
    held constant beyond them); CIFAR-100 takes the CIFAR-10 measurements (the same shapes).
    """
    from bslr.catalog import BUILTIN_DATASETS
    from bslr.config import load_config_file

    config = load_config_file(grid_path)
    rows = []
    for name, experiment in config["experiments"].items():
        runs_per_batch_size = len(experiment["learning_rates"]) * len(experiment["seeds"])
        for model, dataset in itertools.product(experiment["models"], experiment["datasets"]):
            measured_on = "cifar10" if dataset.startswith("cifar") else dataset
            measured = results[(results["model"] == model) & (results["dataset"] == measured_on)]
            if measured.empty:
                continue
            spec = BUILTIN_DATASETS[dataset]
            images = np.array(
                [runs_per_batch_size * experiment["epochs"] * spec.train_size] * len(experiment["batch_sizes"])
            )
            flop = measured["train_flop_per_image"].iloc[0] * images.sum()
            for (engine, precision, runs, options), group in measured.groupby(
                ["engine", "precision", "runs", "options"]
            ):
                group = group.sort_values("batch_size")
                seconds_per_image = np.interp(experiment["batch_sizes"], group["batch_size"], 1 / group["images_per_s"])
                seconds = float((images * seconds_per_image).sum())
                peak = peak_flops(group["device"].iloc[0], precision, peak_tflops)
                rows.append(
                    dict(
                        experiment=name,
                        model=model,
                        dataset=dataset,
                        device=group["device"].iloc[0],
                        engine=engine,
                        precision=precision,
                        runs=runs,
                        options=options,
                        gpu_hours=seconds / 3600,
                        train_eflop=flop / 1e18,
                        floor_hours=flop / peak / 3600,
                    )
                )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["floor_fraction"] = table["floor_hours"] / table["gpu_hours"]
    return table


def print_tables(results: pd.DataFrame, args: argparse.Namespace, seconds: float) -> None:
    print(
        f"# {datetime.date.today()}, {results['device'].iloc[0]}, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    print(f"# python benchmarks/throughput.py {' '.join(sys.argv[1:])}   ({seconds:.0f} s)\n")
    shown = results[
        [
            "engine",
            "model",
            "batch_size",
            "precision",
            "runs",
            "options",
            "images_per_s",
            "train_images_per_s",
            "step_ms",
        ]
    ]
    print(shown.round({"images_per_s": 1, "train_images_per_s": 1, "step_ms": 3}).to_string(index=False))

    key = ["model", "dataset", "batch_size"]
    reference = results[results["engine"] == "reference"].set_index(key)["images_per_s"]
    project = results[results["engine"] == "project"].copy()
    project["ratio"] = [reference.get(tuple(row), float("nan")) for row in project[key].itertuples(index=False)]
    project["ratio"] = project["images_per_s"] / project["ratio"]
    print("\nproject / reference, images per second over whole epochs (training and evaluation):\n")
    print(project[[*key, "precision", "runs", "options", "ratio"]].round(2).to_string(index=False))
    for (dataset, runs, options), group in project.groupby(["dataset", "runs", "options"]):
        print(
            f"median ratio on {dataset}, {options} ({runs} run{'s' if runs > 1 else ''}): {group['ratio'].median():.2f}"
        )

    single = project[project["runs"] == 1].set_index([*key, "precision"])["images_per_s"]
    packed = project[project["runs"] > 1]
    if not packed.empty:
        print("\npacking's gain (images per second of all runs together / one run alone):\n")
        for row in packed.itertuples():
            gain = row.images_per_s / single[(row.model, row.dataset, row.batch_size, row.precision)]
            print(f"- {row.model} bs {row.batch_size} {row.precision}, {row.options}: {gain:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="MNIST-1D settings, and the CIFAR models at batch 16 only")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--models", nargs="+", help="only these models")
    parser.add_argument("--batch-sizes", nargs="+", type=int, help="only these batch sizes")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--compile", nargs="+", default=["false"], choices=["false", "default", "reduce-overhead"])
    parser.add_argument("--channels-last", default="auto", type=lambda text: text if text == "auto" else text == "true")
    parser.add_argument("--tf32", default=True, type=lambda text: text == "true")
    parser.add_argument("--pack", type=int, default=1, help="also time packs of this many learning rates")
    parser.add_argument("--learners", nargs="+", default=["serial", "stacked"], help="the packs' learners")
    parser.add_argument("--slots", type=int, default=1, help="also time this many concurrent project processes")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each engine (bslr jobs default to 1)")
    parser.add_argument("--workers", type=int, default=4, help="the reference's DataLoader workers (typical: 4)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after --warmup-epochs")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--heavy-steps", type=int, default=100, help="steps per epoch on CIFAR-shaped data")
    parser.add_argument("--project-grid", help="a config whose grid to project into GPU-hours")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, for the FLOP floor (H200: known)")
    parser.add_argument("--output", default="results/benchmarks/throughput.csv")
    parser.add_argument("--from-csv", help="print and project an earlier throughput.csv instead of measuring")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--no-reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:  # under 3 minutes on 2 CPU cores
        args.heavy_steps, args.epochs = min(args.heavy_steps, 4), min(args.epochs, 2)

    if args.one:
        model, dataset, batch_size = json.loads(args.one)
        print(json.dumps(measure_setting(args, model, dataset, batch_size)))
        return

    settings = MNIST1D_SETTINGS + CIFAR_SETTINGS
    if args.quick:
        settings = MNIST1D_SETTINGS + [setting for setting in CIFAR_SETTINGS if setting[2] == 16]
    if args.models:
        settings = [setting for setting in settings if setting[0] in args.models]
    if args.batch_sizes:
        settings = [setting for setting in settings if setting[2] in args.batch_sizes]
    started = time.perf_counter()
    if args.from_csv:  # tables and projection from an earlier measurement (say, one made on a GPU node)
        results = pd.read_csv(args.from_csv)
    else:
        rows = []
        for setting in settings:
            rows += run_isolated(args, setting)
            if args.slots > 1:
                rows.append(measure_slots(args, setting))
            print(f"measured {setting}", file=sys.stderr)
        results = pd.DataFrame(rows)[COLUMNS + EXTRA_COLUMNS]
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        results.to_csv(args.output, index=False, float_format="%.6g")
    print_tables(results, args, time.perf_counter() - started)

    if args.project_grid:
        table = project_grid(results, args.project_grid, args.peak_tflops)
        table.to_csv(Path(args.output).with_name("projection.csv"), index=False, float_format="%.6g")
        print(f"\nprojected device-hours of {args.project_grid} (training and per-epoch evaluation):\n")
        print(table.round(3).to_string(index=False))
        totals = table.groupby(["engine", "precision", "runs", "options"])[["gpu_hours", "floor_hours"]].sum(
            min_count=1
        )
        totals["floor_fraction"] = totals["floor_hours"] / totals["gpu_hours"]
        print("\ntotal over the grid:\n")
        print(totals.round(3).to_string())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

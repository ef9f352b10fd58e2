"""How a run's arithmetic is executed: device, precision, memory layout, compilation.

None of these changes what is trained (plain SGD at a constant learning rate on the same batches);
on a GPU each changes the floating-point arithmetic, so they are part of a run's settings and the
values they resolve to are written into every per-run Parquet (`engine` metadata).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bslr.config import RunSpec, UpdateRule
from bslr.errors import ConfigError

# Where jobs sharing one machine note which GPU each took; see `claim_gpu`.
CLAIMS_DIR = Path(os.environ.get("BSLR_GPU_CLAIMS", Path(tempfile.gettempdir()) / "bslr-gpu-claims"))


@dataclass(frozen=True)
class Engine:
    """The resolved engine options of one run (after `auto` is decided for its device and model)."""

    device: str
    precision: str  # fp32 | bf16 (autocast; weights, gradients and SGD stay fp32)
    tf32: bool  # TF32 tensor cores for fp32 matmuls and convolutions (CUDA only)
    channels_last: bool  # NHWC memory layout for 2-D convolutional models
    compile: str  # "false" | "default" | "reduce-overhead" (torch.compile mode)
    fused_sgd: bool  # torch.optim.SGD(fused=True): one kernel for the update (CUDA only)

    def metadata(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def resolve_engine(run: RunSpec, device: torch.device, input_rank: int) -> Engine:
    """Decide the `auto` options for this device and input: channels_last only helps 2-D convolutions
    on a GPU; TF32 and fused SGD exist only on CUDA."""
    cuda = device.type == "cuda"
    channels_last = run.channels_last
    if channels_last == "auto":
        channels_last = cuda and input_rank == 3
    return Engine(
        device=str(device),
        precision=run.precision,
        tf32=bool(run.tf32) and cuda,
        channels_last=bool(channels_last) and input_rank == 3,
        compile=str(run.compile).lower(),
        fused_sgd=cuda,
    )


def configure_backends(engine: Engine) -> None:
    """Set the process-wide TF32 switches (the PyTorch >= 2.9 API; the legacy one must not be mixed in)."""
    if engine.device.startswith("cuda"):
        precision = "tf32" if engine.tf32 else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision


def prepare_model(model: torch.nn.Module, engine: Engine) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    """The model in its memory layout, and the callable that trains it (compiled when asked).

    The uncompiled module stays the one whose state is saved and evaluated: its state_dict keys do not
    depend on compilation, and evaluation in large batches gains little from it.
    """
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if engine.compile == "false":
        return model, model
    mode = None if engine.compile == "default" else engine.compile
    return model, torch.compile(model, mode=mode, dynamic=False)


def to_layout(inputs: torch.Tensor, engine: Engine) -> torch.Tensor:
    if engine.channels_last and inputs.ndim == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def autocast(engine: Engine) -> contextlib.AbstractContextManager:
    """bf16 autocast around forward passes (and the loss); a no-op for fp32."""
    device_type = "cuda" if engine.device.startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=engine.precision == "bf16")


def optimizer(parameters, rule: UpdateRule, engine: Engine) -> torch.optim.Optimizer:
    """The run's optimizer as torch.optim computes it (fused kernels on CUDA): SGD with the protocol's
    momentum, Nesterov and weight decay, Adam, or AdamW. The learning rate is the run's; a schedule scales it
    before each step (`Learner.set_lr_factor`)."""
    fused = engine.fused_sgd or None
    if rule.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=rule.lr,
            momentum=rule.momentum,
            nesterov=rule.nesterov,
            weight_decay=rule.weight_decay,
            fused=fused,
        )
    adam = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[rule.optimizer]
    return adam(parameters, lr=rule.lr, betas=rule.betas, eps=rule.eps, weight_decay=rule.weight_decay, fused=fused)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def claim_gpu() -> Iterator[int]:
    """Pick the visible GPU that the fewest live bslr jobs on this machine have claimed, and hold it.

    Snakemake runs several local jobs at once (`--resources gpu_slots=N`) but does not hand out GPU
    indices; without this every job would land on cuda:0. Claims are files named `<gpu>-<pid>` under
    CLAIMS_DIR, chosen under a file lock, and ignored once their process is gone. Under SLURM each job
    sees only its own GPU(s), and this always picks the first.
    """
    count = torch.cuda.device_count()
    if count <= 1:
        yield 0
        return
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True)
    with open(CLAIMS_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load = [0] * count
        for claim in CLAIMS_DIR.glob("*-*"):
            gpu, pid = (int(part) for part in claim.name.split("-"))
            if gpu < count and _alive(pid):
                load[gpu] += 1
            elif not _alive(pid):
                claim.unlink(missing_ok=True)
        chosen = min(range(count), key=lambda index: (load[index], index))
        mine = CLAIMS_DIR / f"{chosen}-{os.getpid()}"
        mine.touch()
    try:
        yield chosen
    finally:
        mine.unlink(missing_ok=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "training.device is 'cuda' but no CUDA device is visible to this job; set training.device: auto "
            "(or cpu), or run the job where a GPU is (on SLURM: training.gpus)"
        )
    return torch.device(name)

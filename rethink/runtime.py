"""How to run, never what to train: device, precision, memory layout, compilation, and how runs that train
together are fused. The same config trains the same model whatever these are (fusion: within the
tolerance its tests state); a config's digest ignores them, and every run records them in its
`rethink.runtime` tag."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError

COMPILE_CACHE_ENTRIES = 64  # compiled graphs kept per forward: architectures x batch shapes in one worker
# How a group of runs (the seeds of one config) trains: "stacked" = one computation over the runs' stacked
# weights (torch.func.vmap; on CUDA, where small nets leave the device idle); "parallel" = each run in its
# own thread with a share of the cores (on a CPU, where one small run cannot use them all); "off" = one
# after another; "auto" = stacked on CUDA, parallel on a CPU with 2+ threads, else off.
FUSE_MODES = ("auto", "stacked", "parallel", "off")


@dataclass(frozen=True)
class Runtime:
    """How to run, not what to train: the same config trains the same model whatever these are."""

    device: str = "auto"
    channels_last: bool | None = None  # default: on CUDA; on CPU it helps some models and slows others
    bf16: bool | None = None  # default: on CUDA; on CPU only when asked
    compile: bool = False  # torch.compile; on CUDA in reduce-overhead mode, which captures the step in CUDA
    # graphs. The compiled code is cached per architecture and reused by later trials in the same process.
    fuse: str = "auto"  # see FUSE_MODES
    # processes that train each run together (DistributedDataParallel, rethink/team.py): one per GPU on
    # CUDA (cuda:0..N-1), or gloo processes sharing the cores on a CPU (for tests)
    processes: int = 1

    def __post_init__(self):
        if self.fuse not in FUSE_MODES:
            raise ConfigError(f"--fuse {self.fuse!r}: expected one of {', '.join(FUSE_MODES)}")
        if self.processes != 1:  # before the device: cuda:K is refused with it whatever this host has
            self._check_processes()
        if self.compile and self.fuse in ("stacked", "parallel"):
            raise ConfigError(f"--fuse {self.fuse} does not combine with --compile on; use --fuse off or auto")
        if self.device == "auto":
            return
        try:
            dev = torch.device(self.device)
        except RuntimeError:
            raise ConfigError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(f"--device {self.device}: no CUDA device is available here; use --device cpu")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise ConfigError(f"--device {self.device}: only {torch.cuda.device_count()} CUDA device(s) here")
        elif dev.type not in ("cpu", "mps"):
            raise ConfigError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N")

    def _check_processes(self) -> None:
        n = self.processes
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"--gpus-per-trial {n!r}: expected a whole number >= 1, e.g. 2")
        if self.compile:
            raise ConfigError(f"--gpus-per-trial {n} does not combine with --compile on; use --compile off")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"--device {self.device} with --gpus-per-trial {n}: the processes take cuda:0..{n - 1} "
                "(choose them with CUDA_VISIBLE_DEVICES); use --device auto, cuda or cpu"
            )
        if self.device != "cpu" and torch.cuda.is_available() and n > torch.cuda.device_count():
            raise ConfigError(f"--gpus-per-trial {n}: only {torch.cuda.device_count()} CUDA device(s) here")

    def resolve(self) -> tuple[torch.device, bool, bool]:
        """The device, whether to use channels_last, whether to autocast to bf16."""
        dev = torch.device(
            "cuda"
            if self.device == "auto" and torch.cuda.is_available()
            else ("cpu" if self.device == "auto" else self.device)
        )
        cuda = dev.type == "cuda"
        bf16 = cuda if self.bf16 is None else self.bf16
        return dev, cuda if self.channels_last is None else self.channels_last, bf16

    def fusion(self, n_runs: int) -> str:
        """How a group of `n_runs` trains: stacked, parallel or off (what `auto` means on this device)."""
        if n_runs < 2 or self.processes > 1:  # a distributed run trains alone
            return "off"
        if self.fuse != "auto":
            return self.fuse
        if self.compile:
            return "off"
        if self.resolve()[0].type == "cuda":
            return "stacked"
        return "parallel" if torch.get_num_threads() >= 2 else "off"

    def describe(self, group: tuple[str, int] | None = None) -> str:
        """What runs, for the record: e.g. 'cuda bf16 channels_last compiled' or 'cpu fp32'; for a run of a
        group (mode, size), how the group was fused: 'cpu fp32 fused:parallel×3' or 'cpu fp32 unfused'."""
        dev, channels_last, bf16 = self.resolve()
        flags = ["bf16" if bf16 else "fp32"] + ["channels_last"] * channels_last + ["compiled"] * self.compile
        if self.processes > 1:
            flags.append(f"ddp×{self.processes}")
        if group is not None:
            mode, n = group
            flags.append("unfused" if mode == "off" or n < 2 else f"fused:{mode}×{n}")
        return " ".join([str(dev), *flags])

    def compiled(self, model: nn.Module, device: torch.device):
        """The callable the step runs: the model itself, or its compiled form."""
        if not self.compile:
            return model
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILE_CACHE_ENTRIES)
        mode = "reduce-overhead" if device.type == "cuda" else None
        return torch.compile(model, mode=mode, dynamic=False)

"""The Ray engine's session: a local Ray instance or an existing cluster joined, the resources each run
declares, the driver's Optuna storage served to the tasks (gRPC proxy) when it is a file, and what reaches
the tasks: the storage and tracking URLs through the object store (never a task's arguments, so neither
Ray's dashboard nor its logs show a credential), checkpoints as bytes checked against their digests."""

from __future__ import annotations

import hashlib
import math
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from rethink.team import free_port
from study.plan.spec import SpecError

from .paths import writable_dir
from .secrets import redact
from .storage import is_journal, is_shared, local_storage_path, make_storage

ENGINES = ("local", "ray")
RAY_MISSING = "--engine ray needs Ray, which is not installed: pip install -e '.[ray]' (or pip install 'ray[default]')"
PROXY_HOST = "127.0.0.1"  # the storage proxy listens here unless --storage-proxy-host says otherwise


@dataclass(frozen=True)
class EngineOptions:
    """How a command runs its trials and final runs: `local` (this process, or --workers N) or `ray`."""

    name: str = "local"
    address: str | None = None  # --ray-address / RAY_ADDRESS; None starts a local Ray instance
    gpus_per_run: float | None = None  # fractional: 0.25 packs four runs on one GPU; None: 1 if the cluster has GPUs
    cpus_per_run: float = 1.0
    proxy_host: str = PROXY_HOST
    processes: int = 1  # --gpus-per-trial: a task trains its run on that many GPUs of its node (rethink/team.py)

    def __post_init__(self):
        if self.name not in ENGINES:
            raise SpecError(f"--engine {self.name!r}: expected one of {', '.join(ENGINES)}")
        if not self.cpus_per_run > 0 or not math.isfinite(self.cpus_per_run):
            raise SpecError(f"--cpus-per-run {self.cpus_per_run}: expected a number > 0, e.g. --cpus-per-run 1")
        if self.gpus_per_run is None:
            return
        if self.processes > 1 and self.gpus_per_run not in (0, self.processes):
            raise SpecError(
                f"--gpus-per-run {self.gpus_per_run:g} with --gpus-per-trial {self.processes}: each task needs "
                f"{self.processes} GPUs; drop --gpus-per-run (auto) or give {self.processes}"
            )
        if not self.gpus_per_run >= 0 or not math.isfinite(self.gpus_per_run):
            raise SpecError(f"--gpus-per-run {self.gpus_per_run}: expected a number >= 0, e.g. 0.25 or 1")
        if self.gpus_per_run > 1 and self.gpus_per_run != int(self.gpus_per_run):
            raise SpecError(f"--gpus-per-run {self.gpus_per_run}: above 1 it must be whole, e.g. 2")

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"


def require_ray():
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SpecError(RAY_MISSING) from None
    return ray


@dataclass(frozen=True)
class Endpoints:
    """The storage and tracking URLs a task connects to; it travels through the object store, and its repr
    masks every credential, so a traceback or a log line that shows it shows no secret."""

    storage: str
    tracking_uri: str

    def __repr__(self) -> str:
        return f"Endpoints(storage={redact(self.storage)!r}, tracking_uri={redact(self.tracking_uri)!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class Parcel:
    """A file's bytes and their sha256, written on arrival only when the digest matches."""

    name: str
    data: bytes
    sha256: str

    @classmethod
    def of(cls, path: Path, name: str | None = None) -> Parcel:
        data = Path(path).read_bytes()
        return cls(name or Path(path).name, data, hashlib.sha256(data).hexdigest())

    def __repr__(self) -> str:
        return f"Parcel({self.name!r}, {len(self.data)} bytes, sha256 {self.sha256[:12]})"

    def unpack(self, folder: Path) -> Path:
        """Write the bytes under `folder` (once per digest), refusing bytes that do not match their digest."""
        if hashlib.sha256(self.data).hexdigest() != self.sha256:
            raise SpecError(f"checkpoint {self.name}: the bytes that arrived do not match sha256 {self.sha256[:12]}")
        path = folder / self.name
        writable_dir(path.parent, "the Ray task's checkpoint folder (RETHINK_RAY_WORKDIR)")
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == self.sha256:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(self.data)
        os.replace(tmp, path)
        return path


def state_digest(state: dict) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes: a model checked after it crossed the wire."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def task_workdir(given: str | None = None) -> Path:
    """Where a task keeps the checkpoints it received: its own folder (given by the driver's
    RETHINK_RAY_WORKDIR, else the worker's, else its temp folder), never the driver's --workdir."""
    import tempfile

    default = Path(tempfile.gettempdir()) / f"rethink-ray-{os.getuid()}"
    return Path(given or os.environ.get("RETHINK_RAY_WORKDIR") or default)


def worker_tags() -> dict[str, str]:
    """Which Ray worker ran a run: its host and pid (a trial records the same as user attributes)."""
    return {"rethink.worker_host": socket.gethostname(), "rethink.worker_pid": str(os.getpid())}


class Cluster:
    """One command's Ray session (a context manager): started, or joined with an address; shut down on exit
    only when it was started here."""

    def __init__(self, opts: EngineOptions, storage: str, tracking_uri: str | None = None):
        from .tracking import DEFAULT_TRACKING_URI

        self.opts = opts
        self.gpus_per_run = opts.gpus_per_run or 0.0
        self.storage = storage
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        self.tracking_uri = _absolute(uri)
        self.ray = require_ray()
        self._started = False
        self._proxy = None
        self.driver_storage = None  # the storage object the driver uses (and the proxy serves), set on entry
        self.task_storage = storage
        self.endpoints = None  # an ObjectRef to Endpoints, set on entry
        self._warming: list = []
        self._put: dict[int, tuple[object, object]] = {}  # id -> (the object, kept alive; its ObjectRef)

    def __enter__(self) -> Cluster:
        ray = self.ray
        address = self.opts.address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports nothing home unless asked to
            kwargs = dict(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
            if address is None:
                kwargs["num_cpus"] = os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = (str(e).splitlines() or [type(e).__name__])[0]
                raise SpecError(f"--ray-address {address}: cannot join the Ray cluster ({first})") from None
            self._started = True
        try:
            self.gpus_per_run = self.opts.gpus_per_run
            if self.gpus_per_run is None:
                has_gpus = self.ray.cluster_resources().get("GPU", 0)
                self.gpus_per_run = float(self.opts.processes) if has_gpus else 0.0
            self._check_fits()
            if given := os.environ.get("RETHINK_RAY_WORKDIR"):  # the tasks' checkpoint folder, where it is known
                writable_dir(given, "RETHINK_RAY_WORKDIR (where Ray tasks keep the checkpoints they receive)")
            self.driver_storage = make_storage(self.storage)
            self._serve_storage()
            self.endpoints = ray.put(Endpoints(self.task_storage, self.tracking_uri))
            warm = ray.remote(warm_worker).options(**self.task_options(), name="rethink-warm-up")
            self._warming = [warm.remote() for _ in range(min(self.slots, 16))]  # while the driver trains the base
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._proxy is not None:
            self._proxy.stop(grace=None)
            self._proxy = None
        if self._started:
            self.ray.shutdown()
            self._started = False

    @property
    def nodes(self) -> int:
        return sum(1 for n in self.ray.nodes() if n.get("Alive"))

    def _check_fits(self) -> None:
        if self.slots < 1:
            have = self.ray.cluster_resources()
            raise SpecError(
                f"--cpus-per-run {self.opts.cpus_per_run} / --gpus-per-run {self.gpus_per_run:g}: no node of the "
                f"Ray cluster has that much (cluster: {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs)"
            )
        if self.nodes > 1 and local_storage_path(self.tracking_uri) is not None:
            raise SpecError(
                f"tracking URI {redact(self.tracking_uri)} is a file on this host, which the cluster's other nodes "
                "cannot reach: start a tracking server (`rethink serve`) and pass --tracking-uri http://HOST:PORT"
            )

    def _serve_storage(self) -> None:
        """A file storage (SQLite, journal) is served to the tasks through Optuna's gRPC proxy; PostgreSQL is
        reached directly."""
        if is_shared(self.storage) or self.storage.startswith("grpc://"):
            return
        if is_journal(self.storage):  # Optuna's proxy serves RDB storages only: tasks on this host open the file
            if self.nodes > 1:
                raise SpecError(
                    f"storage {self.storage}: a journal file cannot be served to the cluster's {self.nodes} nodes; use "
                    "--storage sqlite:///PATH (served to them through Optuna's gRPC proxy) or PostgreSQL"
                )
            self.task_storage = f"journal:{local_storage_path(self.storage)}"
            return
        host = self.opts.proxy_host
        if self.nodes > 1 and host in ("127.0.0.1", "localhost"):
            raise SpecError(
                f"storage {redact(self.storage)} is a file on this host and the cluster has {self.nodes} nodes: "
                "serve it to them with --storage-proxy-host <this host's address>, or use PostgreSQL"
            )
        from optuna.storages._grpc.server import make_server  # what run_grpc_proxy_server starts, not blocking

        port = free_port(host)
        self._proxy = make_server(self.driver_storage, host, port)
        self._proxy.start()
        self.task_storage = f"grpc://{host}:{port}"
        print(f"[ray] Optuna storage served to the tasks on {self.task_storage}", file=sys.stderr, flush=True)

    @property
    def slots(self) -> int:
        """How many runs fit at once, node by node, by the resources each declares (a run never spans nodes)."""
        total = 0
        for node in self.ray.nodes():
            if not node.get("Alive"):
                continue
            have = node.get("Resources", {})
            fits = have.get("CPU", 0) / self.opts.cpus_per_run
            if self.gpus_per_run:
                fits = min(fits, have.get("GPU", 0) / self.gpus_per_run)
            total += int(fits + 1e-9)
        return total

    def put_once(self, obj):
        """`obj` in the object store once per session (a data split that several stages send to their tasks)."""
        if id(obj) not in self._put:
            self._put[id(obj)] = (obj, self.ray.put(obj))
        return self._put[id(obj)][1]

    def task_options(self) -> dict:
        """Each task's declared resources; Ray never retries a task itself (Optuna and the final evaluation
        retry what was lost, with the same parameters, so the stores keep one account)."""
        return {"num_cpus": self.opts.cpus_per_run, "num_gpus": self.gpus_per_run, "max_retries": 0}

    @property
    def threads(self) -> int:
        return max(1, int(self.opts.cpus_per_run))


def _absolute(uri: str) -> str:
    """A relative sqlite:/// tracking URI made absolute, so tasks in another folder find the same file."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).absolute())
    return uri


def warm_worker() -> int:
    """A first task per slot that imports what every task needs (torch, MLflow, Optuna: seconds each), so
    Ray's workers are ready by the time the trunk is: the driver does not wait for it."""
    import optuna  # noqa: F401
    import torch  # noqa: F401

    import rethink.arms  # noqa: F401
    import rethink.train  # noqa: F401

    from . import tracking  # noqa: F401  (mlflow)

    return os.getpid()


def connect_task(endpoints: Endpoints, threads: int) -> None:
    """A task's first step: its thread count, MLflow pointed where the driver's is."""
    import torch

    from .tracking import configure

    torch.set_num_threads(threads)
    configure(endpoints.tracking_uri)

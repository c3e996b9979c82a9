"""The training loop: one step function plus hooks for logging, evaluation and checkpoints.

Single process, or several under ``torchrun`` (DistributedDataParallel: NCCL on GPUs, gloo on
CPU). Every rank takes the same steps on its own shard of each epoch, evaluates its shard of the
validation set (the metrics are merged) and takes part in averaging the logged loss terms and the
precise-BN statistics; rank 0 alone writes (TensorBoard, checkpoints, config.yaml, summary.json).

Model selection: ``best.pt`` is the checkpoint with the lowest validation ``abs_rel``, and
validation is the ``val`` role of the data (held out of the training split by scene for file
datasets, the synthetic set's own val rooms): never the test split, which only
``depth-eval --split test`` reads.
"""
from __future__ import annotations

import collections
import contextlib
import inspect
import itertools
import logging
import math
import os
import random
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from edgedepth.errors import CheckpointError, EdgeDepthError, UsageError
from edgedepth.io import check_writable_folder, write_json_atomic
from edgedepth.spec import ModelSpec
from edgedepth.training.checkpoint import read_checkpoint, restore_rng_state, rng_state, save_checkpoint
from edgedepth.training.config import config_to_dict, save_config, spec_from_config
from edgedepth.training.data import build_dataloader, build_dataset, normalize_torch
from edgedepth.training.evaluate import edge_metrics_apply, evaluate_model, limit_samples, make_image_grid
from edgedepth.training.losses import DepthLoss
from edgedepth.training.model import create_model
from edgedepth.training.model.state_dict import state_dict_mismatch

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
SUMMARY_FILE = "summary.json"
#: Validation metric that decides ``best.pt`` (lower is better).
BEST_METRIC = "abs_rel"
#: Logged steps the final ``loss_shares`` average over.
SHARE_WINDOW = 100
#: Prefix of the loss terms that are each term's weighted share of the total (DepthLoss).
SHARE_PREFIX = "share/"


class TrainingError(EdgeDepthError):
    """Training cannot go on (e.g. the loss stayed non-finite for too many steps)."""


@dataclass
class DistInfo:
    """Where this process sits in a ``torchrun`` job (world_size 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    best_metric: float = math.inf
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    #: Batches of epoch ``epoch`` already trained on: a resumed run skips them.
    epoch_batches: int = 0


def dist_info_from_env() -> DistInfo:
    """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE (absent = a single process)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def select_device(requested: str, dist: DistInfo) -> torch.device:
    """``auto`` = the local rank's GPU when CUDA is available, else CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"train.device={requested!r} but CUDA is not available; use train.device=cpu")
        return torch.device("cuda", dist.local_rank if requested == "cuda" else int(requested.split(":")[1]))
    return torch.device(requested)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AMX tiles or AVX512-BF16): there, bf16
    autocast makes a training step about 1.5x faster; elsewhere it is emulated and slower."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence the getattr
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def select_amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full FP32).

    ``auto``: bf16 on CUDA GPUs that have it (else fp16 with a loss scaler), bf16 on CPUs with
    native bf16, FP32 otherwise. An explicit ``bf16``/``fp16`` is honoured or refused, never
    silently replaced.
    """
    if amp == "none":
        return None
    if device.type not in ("cuda", "cpu"):
        if amp != "auto":
            raise TrainingError(f"train.amp={amp} is supported on CUDA and CPU, not {device.type}; use train.amp=none")
        return None
    if device.type == "cpu":
        if amp == "fp16":
            raise TrainingError(
                "train.amp=fp16 needs a CUDA device (CPU autocast uses bf16); use train.amp=bf16 or none"
            )
        if amp == "auto" and not cpu_has_native_bf16():
            return None
        return torch.bfloat16
    if amp == "auto":
        # Without including_emulation=False torch says yes on pre-Ampere GPUs (T4, V100), where
        # bf16 is emulated and slower than fp16 with a loss scaler.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Two AdamW groups: weight decay on convolution and linear weights only.

    Decay pulls a parameter towards 0: right for a weight matrix (a prior against large filters),
    wrong for a normalisation's scale and shift, a bias or a ReZero ``alpha`` (a gate that starts
    at 0 and must be free to open). Those are exactly the parameters with fewer than 2 dimensions.
    """
    decay: List[torch.nn.Parameter] = []
    no_decay: List[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`, fused where torch has the fused kernel for ``device``:
    on a 2-core CPU the update of ResNet18's 11 M weights took 8 ms fused against 41 ms per-tensor
    (a fifth of a 96x128 step)."""
    fused = device.type in ("cpu", "cuda") and "fused" in inspect.signature(torch.optim.AdamW).parameters
    options: Dict[str, Any] = {"fused": True} if fused else {}
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, weight_decay=weight_decay, **options)


def upgrade_optimizer_state(state: Dict[str, Any], model: torch.nn.Module, weight_decay: float) -> Dict[str, Any]:
    """A checkpoint's one-group AdamW state (written before :func:`parameter_groups`) as the two
    groups :func:`make_optimizer` builds now, every parameter keeping its moments; other states
    are returned as they are (load_state_dict then names any mismatch)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if len(state["param_groups"]) != 1 or len(state["param_groups"][0]["params"]) != len(params):
        return state
    old_group = state["param_groups"][0]
    old_index = {id(p): index for p, index in zip(params, old_group["params"])}
    groups: List[Dict[str, Any]] = []
    moments: Dict[int, Any] = {}
    index = 0  # the new state numbers the parameters group after group
    for group in parameter_groups(model, weight_decay):
        indices = []
        for parameter in group["params"]:
            if old_index[id(parameter)] in state["state"]:
                moments[index] = state["state"][old_index[id(parameter)]]
            indices.append(index)
            index += 1
        groups.append(dict(old_group, params=indices, weight_decay=group["weight_decay"]))
    return {"state": moments, "param_groups": groups}


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LRScheduler:
    """Linear warm-up from ``lr / warmup_steps`` to ``lr`` over ``warmup_steps``, then cosine decay
    to 0 at ``total_steps``: torch's ``SequentialLR(LinearLR, CosineAnnealingLR)``."""
    sched = torch.optim.lr_scheduler
    cosine = sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=0.0)
    if warmup_steps <= 0:
        return cosine
    warmup = sched.LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0,
                            total_iters=max(1, warmup_steps - 1))
    return sched.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resume_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, lr: float,
                     step: int) -> LRScheduler:
    """The schedule of the current config, stepped to ``step``: a resumed run follows the curve of
    its config (also when train.steps was raised to train longer; torch's scheduler state would
    keep the old length, whose cosine turns back up past its end), and any checkpoint resumes,
    whatever scheduler wrote it (before SequentialLR: a LambdaLR of the same curve). torch's
    schedulers scale the current LR, so it is reset to ``lr`` first."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr
    scheduler = make_scheduler(optimizer, warmup_steps, total_steps)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for _ in range(step):
            scheduler.step()
    return scheduler


@contextlib.contextmanager
def _tensorboard_thread_errors_deferred() -> Iterator[None]:
    """Keep TensorBoard's writer thread from printing a traceback for an OSError (a full disk): the
    thread keeps the error and the next write raises it in the training thread (``Trainer._events``),
    where it becomes the command's one-line message."""
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


class Trainer:
    """Trains one config into a run folder (``config.yaml``, ``checkpoints/``, ``tb/``)."""

    def __init__(self, cfg: DictConfig, run_dir: Optional[Path] = None, resume: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir or cfg.train.output_dir)
        self.dist = dist_info_from_env()
        if self.dist.is_main:  # refused before any work: the first checkpoint may be an hour away
            check_writable_folder(self.run_dir, "--resume" if resume else "train.output_dir")
        self._init_distributed()
        self.device = select_device(cfg.train.device, self.dist)
        self.amp_dtype = select_amp_dtype(cfg.train.amp, self.device)
        seed_everything(cfg.train.seed + self.dist.rank)
        self.spec: ModelSpec = spec_from_config(cfg)
        # channels_last: oneDNN (CPU) and cuDNN (tensor cores) run convolutions fastest in NHWC;
        # on this project's 2-core CPU it cut a 96x128 step by 13%, 40% with bf16 autocast.
        self.model = self._sync_batchnorm(create_model(self.spec, pretrained=cfg.model.pretrained))
        # In place, as Module.to always is; its typed overloads leave out memory_format, which torch accepts.
        self.model.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.loss_fn = DepthLoss.from_config(cfg.loss).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg.train.lr, cfg.train.weight_decay, self.device)
        self.scheduler = make_scheduler(self.optimizer, cfg.train.warmup_steps, cfg.train.steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        if resume:
            self._load_resume_state()
        self.ddp_model = self._wrap_ddp()
        self.train_loader = self._loader("train")
        self.val_loader = self._loader("val")  # every rank evaluates its shard
        self.writer: Optional[SummaryWriter] = None
        #: The last SHARE_WINDOW logged loss shares (``share/<term>`` of DepthLoss's terms).
        self.shares: Deque[Dict[str, float]] = collections.deque(maxlen=SHARE_WINDOW)

    # -- set-up helpers -------------------------------------------------------------------
    def _init_distributed(self) -> None:
        if not self.dist.enabled or torch.distributed.is_initialized():
            return
        backend = "nccl" if torch.cuda.is_available() and self.cfg.train.device != "cpu" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(self.dist.local_rank)
        torch.distributed.init_process_group(backend=backend)

    def _sync_batchnorm(self, model: torch.nn.Module) -> torch.nn.Module:
        """``train.sync_bn``: BatchNorm over the whole DDP batch (small per-GPU batches at 256x832)."""
        if not self.cfg.train.sync_bn or not self.dist.enabled:
            return model
        if self.device.type != "cuda":
            raise TrainingError(f"train.sync_bn=true needs CUDA devices (SyncBatchNorm), not {self.device.type}; "
                                "set train.sync_bn=false")
        # Same Parameter objects in new modules: the state-dict keys and the optimizer are unchanged.
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.dist.enabled:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _loader(self, role: str) -> torch.utils.data.DataLoader:
        """The training loader (this rank's shard of each epoch, resumable) or the validation one
        (this rank's shard, in order). ``role`` is ``train`` or ``val``, never the test split."""
        train = role == "train"
        dataset: Any = build_dataset(self.cfg.data, role, spec=self.spec, train=train, seed=self.cfg.train.seed)
        if not train:
            dataset = limit_samples(dataset, int(self.cfg.eval.max_samples))
        batch = self.cfg.train.batch_size if train else self.cfg.eval.batch_size
        return build_dataloader(
            dataset,
            batch_size=batch,
            shuffle=train,
            num_workers=self.cfg.data.num_workers,
            seed=self.cfg.train.seed,
            distributed=train and self.dist.enabled,
            drop_last=train,
            shard=None if train else (self.dist.rank, self.dist.world_size),
        )

    def _load_resume_state(self) -> None:
        path = self.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
        if not path.exists():
            raise UsageError(
                f"--resume {self.run_dir}: the run has no checkpoint yet ({CHECKPOINT_DIR}/{LAST_CHECKPOINT} is first "
                f"written at step {self.cfg.train.checkpoint_every}; was it stopped before?); start it again without "
                f"--resume: depth-train --config {self.run_dir / 'config.yaml'} train.output_dir={self.run_dir}"
            )
        # Read onto the CPU whatever device wrote it: load_state_dict copies the weights to the
        # model's device and the optimizer casts its state to its parameters'; the RNG states must
        # stay on the CPU (torch.set_rng_state and numpy take CPU tensors only).
        ckpt = read_checkpoint(path, map_location="cpu")
        mismatch = state_dict_mismatch(self.model.state_dict(), ckpt["model"])
        if mismatch:  # strict load_state_dict would raise a RuntimeError of hundreds of key names
            raise CheckpointError(
                f"--resume {self.run_dir}: {path} does not fit the network its config describes ({mismatch}); resume "
                "with the config.yaml the run was started with (model.* and data.height/width unchanged)"
            )
        self.model.load_state_dict(ckpt["model"])
        cfg = self.cfg.train
        self.optimizer.load_state_dict(upgrade_optimizer_state(ckpt["optimizer"], self.model, cfg.weight_decay))
        self.scheduler = resume_scheduler(self.optimizer, cfg.warmup_steps, cfg.steps, cfg.lr,
                                          int(ckpt["scheduler"]["last_epoch"]))
        self.scaler.load_state_dict(ckpt["scaler"])
        if "loss" in ckpt:  # loss.normalize's running means (older checkpoints: they start afresh)
            self.loss_fn.load_state_dict(ckpt["loss"])
        saved = ckpt["train_state"]
        self.state = TrainState(**{k: saved[k] for k in TrainState.__dataclass_fields__ if k in saved})
        if "rng" in ckpt and self.dist.rank == 0:
            restore_rng_state(ckpt["rng"])
        log.info("resumed %s at step %d", path, self.state.step)

    # -- the loop -------------------------------------------------------------------------
    def train(self) -> Dict[str, Any]:
        """Run until ``train.steps``; returns the final validation metrics (rank 0)."""
        cfg = self.cfg.train
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_files()
            save_config(self.cfg, self.run_dir / "config.yaml")
            # A checkpoint at step N is saved after step N was logged: a resumed run drops only what a
            # killed run logged after its checkpoint (steps > N), which the resumed run logs again.
            self.writer = SummaryWriter(str(self.run_dir / "tb"),
                                        purge_step=self.state.step + 1 if self.state.step else None)
        batches = self.batches()
        progress = tqdm(total=cfg.steps, initial=self.state.step, disable=not self.dist.is_main, desc="train",
                        dynamic_ncols=True)
        started = time.perf_counter()
        with _tensorboard_thread_errors_deferred():
            try:
                metrics = self._loop(batches, progress)
            finally:
                progress.close()
            self.recompute_bn_statistics(cfg.precise_bn_batches)
            return self._finish(time.perf_counter() - started, metrics)

    def _loop(self, batches: Iterator[tuple], progress: Any) -> Dict[str, Any]:
        """Steps until ``train.steps``; returns the last validation metrics."""
        metrics: Dict[str, Any] = {}
        while self.state.step < self.cfg.train.steps:
            batch, data_wait = next(batches)
            terms, grad_norm = self.train_step(batch)
            self.state.step += 1
            progress.update(1)
            if terms is not None:
                progress.set_postfix({k: f"{v:.3f}" for k, v in terms.items() if "/" not in k})
                self._log_step(terms, grad_norm, data_wait)
            metrics = self._after_step(batch) or metrics
        return metrics

    def _remove_stale_temp_files(self) -> None:
        """Drop half-written checkpoints a killed run left behind (the real files are intact)."""
        for stale in (self.run_dir / CHECKPOINT_DIR).glob(".*.tmp"):
            log.info("removing %s, left by a run that was killed while writing a checkpoint", stale)
            stale.unlink(missing_ok=True)

    def batches(self) -> Iterator[tuple]:
        """Endless batches across epochs, each with the seconds the step waited for it.

        ``state.epoch`` / ``state.epoch_batches`` say where in the data the run is; a resumed run
        starts its first epoch after the batches already trained on (the sampler's order and the
        augmentation are functions of the seed and the epoch), so it sees what the uninterrupted
        run would have seen.
        """
        sampler: Any = self.train_loader.sampler
        while True:
            sampler.set_epoch(self.state.epoch, skip=self.state.epoch_batches * self.cfg.train.batch_size)
            waited = time.perf_counter()
            for batch in self.train_loader:
                self.state.epoch_batches += 1
                yield batch, time.perf_counter() - waited
                waited = time.perf_counter()
            if self.state.epoch_batches == 0:
                raise TrainingError(
                    f"the training split gives no batch of {self.cfg.train.batch_size} per process: lower "
                    "train.batch_size or add training data"
                )
            self.state.epoch += 1
            self.state.epoch_batches = 0

    def train_step(self, batch: Dict[str, torch.Tensor]) -> tuple:
        """One optimisation step. Returns (loss terms, grad norm), or (None, None) when skipped."""
        image, depth, mask = self._to_device(batch)
        self.ddp_model.train()
        with self._autocast():
            pred = self.ddp_model(self._network_input(image))
        total, terms = self.loss_fn(pred.float(), depth, mask)
        self.optimizer.zero_grad(set_to_none=True)
        if not self._loss_is_finite(total):
            self._advance_schedule_without_update()
            return None, None
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip or float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return terms, float(grad_norm)

    def _autocast(self):
        """Mixed-precision context of ``train.amp`` (a no-op in FP32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()

    def _network_input(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> normalised float input in the model's channels_last layout."""
        return normalize_torch(image, self.spec).contiguous(memory_format=torch.channels_last)

    def _advance_schedule_without_update(self) -> None:
        """A skipped step still counts as a step, so the LR schedule stays aligned with ``step``."""
        with warnings.catch_warnings():
            # torch warns when the scheduler steps before any optimizer step; here that is intended.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()

    def _to_device(self, batch: Dict[str, torch.Tensor]) -> tuple:
        non_blocking = self.device.type == "cuda"
        return tuple(batch[key].to(self.device, non_blocking=non_blocking) for key in ("image", "depth", "mask"))

    def _loss_is_finite(self, total: torch.Tensor) -> bool:
        """Count a non-finite loss (every rank agrees, so DDP stays in step); abort after too many."""
        finite = torch.isfinite(total.detach()).float()
        if self.dist.enabled:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() == 1.0:
            self.state.nonfinite_in_a_row = 0
            return True
        self.state.nonfinite_total += 1
        self.state.nonfinite_in_a_row += 1
        log.warning("non-finite loss at step %d: step skipped (%d in a row)",
                    self.state.step, self.state.nonfinite_in_a_row)
        if self.state.nonfinite_in_a_row >= self.cfg.train.max_nonfinite:
            raise TrainingError(
                f"the loss was non-finite for {self.state.nonfinite_in_a_row} steps in a row (step {self.state.step}): "
                "lower train.lr, check the data for NaN depth, or set train.amp=none"
            )
        return False

    # -- hooks ----------------------------------------------------------------------------
    def _log_step(self, terms: Dict[str, float], grad_norm: Optional[float], data_wait: float) -> None:
        if self.state.step % self.cfg.train.log_every:
            return
        terms = self._mean_over_ranks(terms)
        self.shares.append({key[len(SHARE_PREFIX):]: value for key, value in terms.items()
                            if key.startswith(SHARE_PREFIX)})
        if not self.dist.is_main:
            return
        step = self.state.step
        with self._events() as writer:
            for key, value in terms.items():
                if key.startswith(SHARE_PREFIX):
                    writer.add_scalar(f"loss_share/{key[len(SHARE_PREFIX):]}", value, step)
                else:
                    writer.add_scalar(f"loss/{key}", value, step)
            writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], step)
            writer.add_scalar("train/grad_norm", grad_norm, step)
            writer.add_scalar("train/data_wait_s", data_wait, step)
            writer.add_scalar("train/nonfinite_skipped", self.state.nonfinite_total, step)

    def _mean_over_ranks(self, values: Dict[str, float]) -> Dict[str, float]:
        """``values`` averaged over the DDP ranks (each rank's batch is a different shard); as is
        without DDP. Every rank calls it at the same step with the same keys (one config)."""
        if not self.dist.enabled or not values:
            return values
        keys = sorted(values)
        stacked = torch.tensor([float(values[key]) for key in keys], dtype=torch.float64,
                               device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(stacked)  # SUM: gloo has no AVG
        return dict(zip(keys, (stacked / self.dist.world_size).tolist()))

    def loss_shares(self) -> Dict[str, float]:
        """Mean share of the total loss of each term over the last SHARE_WINDOW logged steps."""
        totals: Dict[str, List[float]] = {}
        for shares in self.shares:
            for key, value in shares.items():
                totals.setdefault(key, []).append(value)
        return {key: float(np.mean(values)) for key, values in totals.items()}

    @contextlib.contextmanager
    def _events(self) -> Iterator[SummaryWriter]:
        """The TensorBoard writer, which train() opens on the main process (the only one that logs).

        It writes from a thread of its own, and the next call raises that thread's OSError (a full
        disk) without a file name: here it gets the events folder's.
        """
        if self.writer is None:
            raise TrainingError("no TensorBoard writer: only Trainer.train() on the main process logs")
        try:
            yield self.writer
        except OSError as exc:
            if exc.filename is not None or not exc.errno:
                raise
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(self.run_dir / "tb")) from exc

    def _after_step(self, batch: Dict[str, torch.Tensor]) -> Optional[Dict[str, Any]]:
        cfg, step = self.cfg.train, self.state.step
        metrics = None
        if self.dist.is_main and step % cfg.image_every == 0:
            self._log_images(batch, "train")
        if step % cfg.eval_every == 0 and step < cfg.steps:
            metrics = self._evaluate_and_keep_best()
        if self.dist.is_main and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            self._save(LAST_CHECKPOINT)
        return metrics

    def _log_images(self, batch: Dict[str, Any], tag: str) -> None:
        """RGB | GT | prediction | error of a batch under ``<tag>/rgb_gt_pred_error`` (``train``: the
        augmented training batch; ``val``: the first validation batch)."""
        image, depth, mask = self._to_device(batch)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            pred = self.model(self._network_input(image[:4])).float()
        self.model.train(was_training)
        grid = make_image_grid(image[:4], depth[:4], mask[:4], pred, self.spec)
        with self._events() as writer:
            writer.add_image(f"{tag}/rgb_gt_pred_error", grid, self.state.step, dataformats="HWC")

    def _evaluate_and_keep_best(self) -> Dict[str, Any]:
        """Validate (every rank its shard; all get the merged metrics), log and keep best.pt (rank 0)."""
        metrics = evaluate_model(self.model, self.val_loader, self.spec, self.cfg.eval, self.device,
                                 edge_metrics=edge_metrics_apply(self.cfg))
        if metrics.get(BEST_METRIC, math.inf) < self.state.best_metric:
            self.state.best_metric = float(metrics[BEST_METRIC])
            if self.dist.is_main:
                self._save(BEST_CHECKPOINT)
        if self.dist.is_main:
            with self._events() as writer:
                for key, value in metrics.items():
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        writer.add_scalar(f"val/{key}", value, self.state.step)
            first = next(iter(self.val_loader), None)  # None: rank 0's shard is empty (a tiny val set)
            if first is not None:
                self._log_images(first, "val")
        return metrics

    def _save(self, name: str) -> Path:
        path = self.run_dir / CHECKPOINT_DIR / name
        save_checkpoint(
            path,
            self.model,
            self.spec,
            config=config_to_dict(self.cfg),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            loss=self.loss_fn.state_dict(),
            train_state=vars(self.state).copy(),
            rng=rng_state(),
        )
        return path

    def _finish(self, seconds: float, metrics: Dict[str, Any]) -> Dict[str, Any]:
        metrics = self._evaluate_and_keep_best() or metrics  # every rank: validation is sharded
        if not self.dist.is_main:
            return {}
        self._save(LAST_CHECKPOINT)
        if not (self.run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT).exists():
            self._save(BEST_CHECKPOINT)
        with self._events() as writer:
            writer.add_scalar("train/seconds", seconds, self.state.step)
            writer.close()
        self.writer = None
        shares = self.loss_shares()
        if shares:
            log.info("loss shares over the last %d logged steps: %s", len(self.shares),
                     ", ".join(f"{key} {value:.3f}" for key, value in shares.items()))
        metrics = dict(metrics, train_seconds=seconds, nonfinite_skipped=self.state.nonfinite_total,
                       loss_shares=shares)
        write_json_atomic(self.run_dir / SUMMARY_FILE, {"step": self.state.step, "metrics": metrics})
        return metrics

    def recompute_bn_statistics(self, num_batches: int, batches: Optional[Iterator[tuple]] = None) -> None:
        """Precise BN (Wu & Johnson, 2021): replace BatchNorm running statistics by their plain
        average over ``num_batches`` training batches, computed with the final weights
        (``torch.optim.swa_utils.update_bn``: reset, cumulative average, momenta restored).

        The running averages (momentum 0.1) mostly reflect the last ten batches, seen by weights
        that changed since; at the end of a short run that noise moved held-out d1 by up to 4
        points between neighbouring checkpoints. Forward passes only: weights do not change.
        Under DDP each rank averages over its own batches, then the ranks' averages are averaged
        (equal batch counts: the average over all ranks' batches); with SyncBatchNorm the ranks
        already agree. The batches come from the current epoch's order without advancing the
        run's place in the data (up to one epoch of batches).
        """
        if num_batches <= 0 or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                       for m in self.model.modules()):
            return
        if batches is None:
            # The current epoch from its start: the run may have used up its last batch, and update_bn
            # over no batch would leave the statistics reset (mean 0, variance 1).
            sampler: Any = self.train_loader.sampler  # an EpochSampler (build_dataloader)
            sampler.set_epoch(self.state.epoch, skip=0)
        source = batches if batches is not None else ((batch, 0.0) for batch in self.train_loader)
        inputs = (self._network_input(self._to_device(batch)[0]) for batch, _ in itertools.islice(source, num_batches))
        with torch.no_grad(), self._autocast():
            torch.optim.swa_utils.update_bn(inputs, self.model)
        self._average_bn_statistics()

    def _average_bn_statistics(self) -> None:
        if not self.dist.enabled:
            return
        for module in self.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for buffer in (module.running_mean, module.running_var):
                    if buffer is not None:  # None: a BatchNorm without running statistics
                        torch.distributed.all_reduce(buffer)
                        buffer.div_(self.dist.world_size)

    def close(self) -> None:
        """Release what a run holds, also after an error or an interrupt: the TensorBoard writer
        (its last events flushed), the DataLoader worker processes and the process group (torchrun)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:  # a full disk already failed the run: its error is the one to show
                log.debug("TensorBoard events in %s not flushed: %s", self.run_dir / "tb", exc)
        for loader in (self.train_loader, self.val_loader):
            # Persistent workers live as long as the loader's iterator; torch has no public call to stop them.
            shutdown = getattr(getattr(loader, "_iterator", None), "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        if self.dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

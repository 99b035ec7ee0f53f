"""loomrt on a Ray cluster (``pip install loomrt[ray]``; docs/scale-out.md).

Batch generation over a Ray Dataset: ``map_batches`` with a pool of actors, each loading the
model once (memory-mapped) and computing rows with :class:`loomrt.batchjob.RowRunner`, the code
that runs the same job locally. Every output row is the bits it would be on a laptop::

    import loomrt.ray
    report = loomrt.ray.generate_file("prompts.jsonl", "out.jsonl", model="model.gguf",
                                      address="auto", actors=8, threads=4)

Data-parallel training: :class:`DataParallelTrainer` keeps the optimizer and the weights here
(the lead) and gives each Ray actor a contiguous shard of every global batch. A worker returns,
for each of its groups of ``group`` sequences, the gradient sums (the group summed from zero on
that worker) and the per-token embedding rows; the lead adds the sums in the global batch's
order and the rows token after token, then applies AdamW. With ``group=1`` (the default) those
are exactly the additions one process makes when it accumulates the batch (each sequence's sums
added in order, the lookup's rows token by token: csrc/train/train.h), so 1, 2, N workers give
the weights of :meth:`loomrt.trainer.Trainer.train_step`, bit for bit, at any accumulation. A
larger ``group`` sends fewer buffers (global batch / group per step) and gives the bits of any
other run with the same group (``workers=0`` runs it in this process).

Plain Ray actors rather than Ray Train: Ray Train's reductions are torch.distributed /
collective all-reduces (ring or tree orders that depend on the topology), a gather in a
fixed order is not among its primitives, and its controller and worker group cost seconds per
start on a small machine; a lead that gathers and adds in order needs only actors and ``ray.get``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import errors
from .batchjob import Executor, JobReport, JobSettings, Progress, RowRunner, run_job


def _ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise errors.UnsupportedError("Ray is not installed: pip install 'loomrt[ray]'") from None
    return ray


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def init(address: Optional[str] = "local", num_cpus: Optional[int] = None, **kwargs: Any) -> None:
    """Connect to a cluster (``address``: "auto", "ray://host:10001", "host:6379") or start a
    local one (``"local"``: this machine's CPUs or ``num_cpus``, no dashboard). A local cluster's
    workers import this loomrt (its folder goes first on their PYTHONPATH). Does nothing when
    Ray is already initialised."""
    ray = _ray()
    if ray.is_initialized():
        return
    if address in (None, "local"):
        env = dict(kwargs.pop("runtime_env", None) or {})
        env_vars = dict(env.get("env_vars", {}))
        pp = os.environ.get("PYTHONPATH", "")
        env_vars.setdefault("PYTHONPATH", _package_root() + (os.pathsep + pp if pp else ""))
        env["env_vars"] = env_vars
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env, **kwargs)
    else:
        ray.init(address=address, **kwargs)


def _probe(path: str) -> Tuple[bool, str]:
    """On a worker: whether the model path is usable there (and loomrt importable)."""
    import socket

    host = socket.gethostname()
    try:
        import loomrt  # noqa: F401
    except Exception as exc:  # pragma: no cover - a worker without loomrt
        return False, f"{host}: loomrt cannot be imported ({exc})"
    if os.path.isfile(path):
        return os.access(path, os.R_OK), f"{host}: {path} is not readable"
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "config.json")) or any(
            n.endswith(".gguf") for n in os.listdir(path)), f"{host}: {path} has no config.json"
    return False, f"{host}: {path} does not exist"


def check_model_on_nodes(path: str, timeout: float = 120.0) -> int:
    """Check on every alive node of the cluster that ``path`` is a readable model; raises
    NotFoundError naming the nodes where it is not. Returns the number of nodes checked."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(path)
            for n in nodes]
    bad = [f"node {n.get('NodeManagerAddress', '?')} ({msg})"
           for n, (ok, msg) in zip(nodes, ray.get(refs, timeout=timeout)) if not ok]
    if bad:
        raise errors.NotFoundError(f"the model {path!r} is not usable on {len(bad)} of {len(nodes)} Ray node(s): "
                                   f"{'; '.join(bad)}. Put the model at the same path on every node (a shared "
                                   "filesystem, or copy it) before starting the job; nothing was run")
    return len(nodes)


# ---- batch generation ----------------------------------------------------------------------------


class _RowActor:
    """A Ray Data actor: one model load (memory-mapped), then rows."""

    def __init__(self, settings: Dict[str, Any], fault: Optional[Tuple[str, int]] = None):
        self.runner = RowRunner(JobSettings(**settings))
        self.fault = fault

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outs = []
        for text in batch["row"]:
            row = json.loads(text)
            if self.fault is not None and row["line"] == self.fault[1] and not os.path.exists(self.fault[0]):
                # fault injection (tests): this worker process dies once, mid-batch
                open(self.fault[0], "w").close()
                os._exit(1)
            outs.append(json.dumps(self.runner.run(row)))
        return {"line": np.asarray(batch["line"]), "out": np.array(outs, dtype=object)}


def ray_executor(address: Optional[str] = "local", actors: int = 1, threads: Optional[int] = None,
                 batch_size: int = 16, _fault: Optional[Tuple[str, int]] = None) -> Executor:
    """An executor for :func:`loomrt.batchjob.run_job` that computes rows on Ray: ``actors``
    actors of ``threads`` threads (and as many CPUs) each; rows go in batches of
    ``batch_size``; the results stream back in input order."""
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise errors.InvalidArgumentError(f"actors must be an integer >= 1, got {actors!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise errors.InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")

    def run(settings: JobSettings, rows: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        init(address)
        check_model_on_nodes(settings.model)
        if not rows:
            return
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        t = threads if threads is not None else 1
        items = [{"line": r["line"], "row": json.dumps(r)} for r in rows]
        ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // batch_size)))
        sett = dataclasses.replace(settings, threads=t)
        out = ds.map_batches(_RowActor, fn_constructor_kwargs={"settings": dataclasses.asdict(sett), "fault": _fault},
                             batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=t,
                             batch_format="numpy")
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["out"]:
                yield json.loads(text)

    return run


def generate_file(input_path: str, output_path: str, *, model: str, address: Optional[str] = "local",
                  actors: int = 1, threads: Optional[int] = None, max_tokens: int = 64, batch_size: int = 16,
                  overwrite: bool = False, progress: Optional[Progress] = None, **settings: Any) -> JobReport:
    """Run (or resume) a JSONL batch job on Ray (see :mod:`loomrt.batchjob` for the rows)."""
    job = JobSettings(model=model, max_tokens=max_tokens, threads=threads, **settings)
    return run_job(input_path, output_path, job, ray_executor(address, actors, threads, batch_size),
                   overwrite=overwrite, progress=progress)


# ---- data-parallel training ----------------------------------------------------------------------


def _spec_trainer(spec: Dict[str, Any]) -> Any:
    from .trainer import Trainer

    if spec.get("path"):
        return Trainer.from_pretrained(spec["path"], threads=spec["threads"])
    return Trainer(spec["config"], seed=spec["seed"], threads=spec["threads"])


class _GradWorker:
    """Holds a replica of the weights; computes the gradient sums of groups of sequences."""

    def __init__(self, spec: Dict[str, Any]):
        self.t = _spec_trainer(spec)

    def grads(self, weights: np.ndarray, tokens: np.ndarray, group: int) -> List[Tuple[Any, ...]]:
        """(gradient sums, loss sum, targets, embedding rows) of each group of sequences."""
        self.t.set_flat_weights(weights)
        parts = []
        for i in range(0, tokens.shape[0], group):
            self.t.grad_clear()
            _, rows = self.t.accumulate_rows(tokens[i:i + group])
            grad, loss_sum, count = self.t.grad_read()
            parts.append((grad, loss_sum, count, rows))
        self.t.grad_clear()
        return parts

    def pid(self) -> int:
        return os.getpid()


def shard_groups(n_groups: int, workers: int) -> List[Tuple[int, int]]:
    """Contiguous [start, end) group ranges of each worker (the first ones get one more)."""
    base, extra = divmod(n_groups, workers)
    out, g = [], 0
    for w in range(workers):
        k = base + (1 if w < extra else 0)
        out.append((g, g + k))
        g += k
    return out


class DataParallelTrainer:
    """Data-parallel training with the bits of one process (see the module docstring).

    ``config`` (an HF-style dict, seeded init with ``seed``) or ``path`` (a model folder or
    GGUF to start from); ``workers`` Ray actors (0: computed in this process) of ``threads``
    threads; ``settings``: the trainer's hyperparameters (lr, warmup, ...)."""

    def __init__(self, config: Optional[Dict[str, Any]] = None, *, path: Optional[str] = None, seed: int = 0,
                 workers: int = 2, group: int = 1, threads: int = 1, address: Optional[str] = "local",
                 num_cpus_per_worker: Optional[float] = None, **settings: Any):
        from .trainer import Trainer

        if (config is None) == (path is None):
            raise errors.InvalidArgumentError("give a config (seeded weights) or a path (a model to start from)")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise errors.InvalidArgumentError(f"workers must be an integer >= 0, got {workers!r}")
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise errors.InvalidArgumentError(f"group must be an integer >= 1, got {group!r}")
        self.config = dict(config) if config is not None else None
        self.spec = {"config": self.config, "path": path, "seed": int(seed), "threads": int(threads)}
        self.lead: Trainer = _spec_trainer(self.spec)
        if settings:
            self.lead.set(**settings)
        self.group = group
        self.n_workers = workers
        self._local: Optional[_GradWorker] = None
        self._actors: List[Any] = []
        if workers == 0:
            self._local = _GradWorker(self.spec)
        else:
            init(address)
            if path is not None:
                check_model_on_nodes(path)
            ray = _ray()
            cpus = float(threads) if num_cpus_per_worker is None else float(num_cpus_per_worker)
            cls = ray.remote(num_cpus=cpus, max_restarts=-1, max_task_retries=-1)(_GradWorker)
            self._actors = [cls.remote(self.spec) for _ in range(workers)]

    def set(self, **settings: Any) -> None:
        self.lead.set(**settings)

    def step(self, tokens: Any) -> float:
        """One optimizer step on a global batch (batch, seq_len + 1) of ids; returns its mean loss."""
        arr = np.ascontiguousarray(np.asarray(tokens, dtype=np.int32))
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise errors.InvalidArgumentError(f"tokens must be (batch, seq_len + 1) ids, got shape {arr.shape}")
        b = arr.shape[0]
        if b % self.group:
            raise errors.InvalidArgumentError(f"the global batch ({b} sequences) is not a multiple of group "
                                              f"{self.group}")
        weights = self.lead.flat_weights()
        g = self.group
        if self._local is not None:
            parts = [self._local.grads(weights, arr, g)]
        else:
            ray = _ray()
            wref = ray.put(weights)
            ranges = [(s, e) for s, e in shard_groups(b // g, len(self._actors))]
            refs = [a.grads.remote(wref, arr[s * g:e * g], g) for a, (s, e) in zip(self._actors, ranges) if e > s]
            parts = ray.get(refs)
        # the fold: every part added in the global batch's order (worker order = sequence order)
        self.lead.grad_clear()
        i = 0
        for wparts in parts:
            for grad, loss_sum, count, rows in wparts:
                self.lead.grad_add(grad, loss_sum, count)
                self.lead.lookup_add(arr[i:i + g], rows)
                i += g
        self.lead.apply()
        return self.lead.loss

    def worker_pids(self) -> List[int]:
        if self._local is not None:
            return [os.getpid()]
        return _ray().get([a.pid.remote() for a in self._actors])

    def weights_bytes(self) -> bytes:
        return self.lead.weights_bytes()

    # ---- checkpoints: the files of `loomrt train` ------------------------------------------------

    def save(self, folder: str, tokenizer_json: Optional[str] = None, state: Optional[Dict[str, Any]] = None) -> None:
        save_checkpoint(self.lead, folder, self._config(), tokenizer_json, state)

    def load(self, folder: str) -> None:
        load_checkpoint(self.lead, folder, self._config())

    def _config(self) -> Dict[str, Any]:
        if self.config is not None:
            return self.config
        path = self.spec["path"]
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return json.load(f)

    def close(self) -> None:
        ray = _ray() if self._actors else None
        for a in self._actors:
            ray.kill(a)
        self._actors = []


def save_checkpoint(trainer: Any, folder: str, config: Dict[str, Any], tokenizer_json: Optional[str] = None,
                    state: Optional[Dict[str, Any]] = None) -> None:
    """A checkpoint of any trainer (a data-parallel lead or a plain one) in the layout of
    `loomrt train`: model.safetensors (HF names), config.json, optimizer.bin,
    trainer_state.json (+ tokenizer files when ``tokenizer_json`` is given)."""
    from .train import _atomic_write, save_safetensors, to_hf, write_checkpoint

    st = dict(state or {})
    st.setdefault("step", trainer.step)
    if tokenizer_json is not None:
        write_checkpoint(folder, trainer, config, tokenizer_json, st)
        return
    os.makedirs(folder, exist_ok=True)
    save_safetensors(os.path.join(folder, "model.safetensors"), to_hf(trainer.weights(), config), {"format": "pt"})
    _atomic_write(os.path.join(folder, "config.json"), json.dumps(config, indent=2, sort_keys=True).encode())
    _atomic_write(os.path.join(folder, "optimizer.bin"), trainer.state_bytes())
    _atomic_write(os.path.join(folder, "trainer_state.json"), json.dumps(st, indent=2, sort_keys=True).encode())


def load_checkpoint(trainer: Any, folder: str, config: Dict[str, Any]) -> None:
    """Weights and optimizer state of a checkpoint (from a cluster or a laptop) into a trainer."""
    from .train import load_checkpoint_weights

    load_checkpoint_weights(trainer, folder, config)
    try:
        with open(os.path.join(folder, "optimizer.bin"), "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise errors.NotFoundError(f"{folder}: no optimizer.bin ({exc.strerror}): not a training checkpoint") from None
    trainer.load_state(blob)

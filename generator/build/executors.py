"""Where a build's classes run: `RayExecutor` sends one Ray task per class to a Ray cluster.

A task runs `build.run_class`, the function a local build runs, so the content keys, file
names, atomic writes and manifests are the local build's: a Ray build of a catalog equals a
local build byte for byte, and a driver killed mid-build resumes like a killed local build
(the next build reads the manifests the finished tasks wrote). The output folder must be one
folder that every node sees (a shared file system).

The model is loaded once, on the driver, and put into Ray's object store once; a worker
process takes it from there on its first class and keeps it for the next ones. A task whose
worker dies (out of memory, a lost node) is rerun by Ray, up to `max_retries` times.
"""
from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from typing import Any, Iterator

from tqdm import tqdm

from generator import build
from generator.build import ClassOutcome, ClassPlan
from generator.catalog import Catalog
from generator.errors import AtlasError

EXECUTORS = ("local", "ray")
CONNECT_TIMEOUT_S = 5.0  # Ray's own join retries for minutes, then exits the process


class ExecutorError(AtlasError, RuntimeError):
    """The executor cannot run at all (Ray missing, no cluster at the address)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
    return ray


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """ExecutorError within `timeout` seconds when nothing answers at a Ray cluster's host:port
    (None and `auto` are Ray's to find)."""
    if address is None or address == "auto":
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(f"--address {address!r}: expected host:port (e.g. 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ExecutorError(f"cannot reach a Ray cluster at {address} ({reason} within {timeout:g} s): "
                            "is `ray start --head` running there, and is the port open?") from None


def task_resources(device: str, cluster_gpus: float) -> dict[str, float]:
    """What one class's task asks Ray for: a GPU when the catalog's device is CUDA (or `auto`
    on a cluster that has GPUs), else one CPU core."""
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)
    return {"num_cpus": 1, "num_gpus": 1} if wants_gpu else {"num_cpus": 1, "num_gpus": 0}


def _share_user_model_code(ray: Any) -> None:
    """Model classes from a `path/net.py:factory` file live in a module the workers cannot
    import; pickle them by value so the shared model unpickles anywhere."""
    for name, module in list(sys.modules.items()):
        if name.startswith("atlas_user_model_"):
            ray.cloudpickle.register_pickle_by_value(module)


def _run_on_worker(catalog: Catalog, plan: ClassPlan, model_digest: str, shared: list[Any], threads: int) -> ClassOutcome:
    """The Ray task: fill this worker's model slot from the object store (once), then run the class
    with the driver's number of torch threads (Ray starts workers with 1; a different count sums
    floats in a different order, and the pictures would differ from a local build's in the last bits).

    The model's reference comes inside a list so Ray does not fetch it for every task; a worker
    that already holds it skips the fetch.
    """
    import torch

    torch.set_num_threads(threads)
    slot = (model_digest, catalog.device)
    if shared and slot not in build._PATHWAYS:
        import ray

        from generator.nets.models import resolve_device

        value = ray.get(shared[0])
        if not isinstance(value, Exception):
            try:
                value = value.to(resolve_device(catalog.device))
            except Exception as exc:  # e.g. --device cuda on a node without one: every class says so
                value = exc
        build._PATHWAYS[slot] = value
    return build.run_class(catalog, plan, model_digest, progress=False)


@dataclass
class RayExecutor:
    """Runs each class as a Ray task on the cluster at `address` (None: a new local cluster,
    or the one this process already joined)."""

    address: str | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        check_address(self.address)  # fail in seconds, before any planning, when no cluster answers
        import_ray()  # likewise when Ray is not installed

    def run(self, catalog: Catalog, plans: list[ClassPlan], model_digest: str, progress: bool) -> Iterator[ClassOutcome]:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
            except (Exception, SystemExit) as exc:  # Ray exits the process when it gives up joining
                reason = f"Ray gave up (sys.exit({exc.code!r}))" if isinstance(exc, SystemExit) else str(exc)
                raise ExecutorError(f"cannot start or join a Ray cluster at {self.address or 'a new local one'}: {reason}") from None
        try:
            yield from self._run(ray, catalog, plans, model_digest, progress)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, catalog: Catalog, plans: list[ClassPlan], model_digest: str,
             progress: bool) -> Iterator[ClassOutcome]:
        shared = []
        if any(plan.stale for plan in plans):  # thumbnails alone need no model, like a local build
            try:
                value: Any = build._load_pathway(catalog.model, "cpu")
                _share_user_model_code(ray)
            except Exception as exc:  # every class reports it, as in a local build
                value = exc
            shared = [ray.put(value)]
        resources = task_resources(catalog.device, ray.cluster_resources().get("GPU", 0))
        task = ray.remote(max_retries=self.max_retries, retry_exceptions=True, **resources)(_run_on_worker)
        import torch

        threads = torch.get_num_threads()
        pending = {task.remote(catalog, plan, model_digest, shared, threads): plan for plan in plans}
        bar = tqdm(total=len(plans), desc="classes (ray)", unit="class", disable=not progress)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                plan = pending.pop(done[0])
                try:
                    outcome = ray.get(done[0])
                except Exception as exc:  # the task failed max_retries + 1 times
                    outcome = ClassOutcome(class_id=plan.entry.id,
                                           failed=[(None, f"ray task failed: {build._message(exc)}")])
                bar.set_postfix_str(plan.entry.id)
                bar.update()
                yield outcome
        finally:
            for ref in pending:  # an interrupted driver stops its tasks; the manifests say what is done
                ray.cancel(ref)
            bar.close()


def make_executor(name: str, address: str | None = None) -> RayExecutor | None:
    """The executor `atlas build --executor NAME` runs (None: the local one, build.py's own)."""
    if name not in EXECUTORS:
        raise ExecutorError(f"--executor {name!r}: known: {', '.join(EXECUTORS)}")
    if name == "local":
        if address is not None:
            raise ExecutorError("--address is for --executor ray")
        return None
    return RayExecutor(address=address)

"""Data-parallel training across processes (CPU gloo or one GPU per process with NCCL).

Every process builds the same session (same seeds, same latent cache, same prompt draws) and, for
each micro-batch, computes the loss of its contiguous share of the samples only. The loop then sums
the vector gradients and the loss over processes, so N processes with batch B give the gradient one
process gets with batch B. Only the main process writes files, previews and runs hooks; a stop
request on any process stops all of them at the same step.

Started by `accelerate launch --multi_gpu -m tistudio train ...`, `torchrun -m tistudio ...` (both set
RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) or by `tistudio train --num-processes N`, a thin wrapper
that hands the command line to accelerate's launcher (launch() below)."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import TIStudioError


def launched() -> bool:
    """True inside a process started by a launcher (accelerate, torchrun, launch())."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, batch_size: int, device_type: str) -> "Distributed":
        """Join the process group the launcher described, or run alone."""
        if not launched():
            return cls()
        import torch.distributed as dist

        world = int(os.environ["WORLD_SIZE"])
        if batch_size % world:
            raise TIStudioError(f"--batch-size {batch_size}: must be a multiple of the {world} processes "
                                f"so each computes an equal share")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        return cls(rank=dist.get_rank(), world=dist.get_world_size(),
                   local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())))

    def device(self, device):
        """One GPU per process: cuda:LOCAL_RANK."""
        import torch

        if self.world > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def run_root(self, root: Path) -> Path:
        """The main process writes the user's run folder; the others keep their identical files
        (hooks such as plots write there too) in a scratch folder removed by close()."""
        return root if self.is_main else self._scratch() / Path(root).name

    def _scratch(self) -> Path:
        return Path(tempfile.gettempdir()) / f"tistudio-rank{self.rank}-{os.getpid()}"

    def share(self, mb):
        """This process's contiguous share of a micro-batch (all of it when alone). Everything is
        drawn for the whole micro-batch first, so randomness does not depend on the process count."""
        if self.world == 1:
            return mb
        n = len(mb.indices) // self.world
        part = slice(self.rank * n, (self.rank + 1) * n)
        return replace(mb, prompts=mb.prompts[part], timesteps=mb.timesteps[part], noisy=mb.noisy[part],
                       target=mb.target[part], weights=None if mb.weights is None else mb.weights[part],
                       size_ids=None if mb.size_ids is None else mb.size_ids[part],
                       indices=mb.indices[part], flips=mb.flips[part], position=mb.position + self.rank * n)

    def reduce(self, params, loss: float, grads_finite: bool) -> tuple[float, bool]:
        """Sum the vector gradients and the step's loss over processes; returns the total loss and
        whether the summed gradients are all finite (`grads_finite`: this process's, when alone).
        A parameter no process has a gradient for (an embedding no prompt of the step names: its
        share of every process) keeps none, as in one process, so the optimizer leaves it and its
        moments alone; a zero sum would let AdamW's momentum move it. Each process counts itself
        in for each parameter it has a gradient of, in the same one call."""
        if self.world == 1:
            return loss, grads_finite
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        dtype, device = grads[0].dtype, grads[0].device
        have = torch.tensor([float(p.grad is not None) for p in params] + [loss], dtype=dtype, device=device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [have])
        dist.all_reduce(flat)  # one call for every vector, who has a gradient, and the loss
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()
        summed = flat[:offset]
        total, ok, *counts = torch.cat([torch.stack([flat[-1], torch.isfinite(summed).all().to(dtype)]),
                                        flat[offset:-1]]).tolist()
        for p, count in zip(params, counts):
            if not count:  # no process had one
                p.grad = None
        return total, bool(ok)

    def any_stopped(self, stopped: bool) -> bool:
        """True on every process when any of them was asked to stop."""
        if self.world == 1:
            return stopped
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1.0 if stopped else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            if not self.is_main:
                shutil.rmtree(self._scratch(), ignore_errors=True)


SAVE_GRACE_S = 600   # after a Ctrl-C the launcher waits this long for the processes to finish the step and save


def launch(argv: list[str], n: int) -> int:
    """Run `python -m tistudio ARGV` as N cooperating processes on this machine through accelerate's
    launcher (torchrun underneath: a free port, the rank variables, a failed process stops the others,
    a Ctrl-C reaches each process once, which then saves and stops). Returns the first failing exit
    code (128 + the signal for a process killed by one, or for the interrupted launcher), else 0. CPU
    threads are divided between the processes unless OMP_NUM_THREADS says otherwise."""
    # Imported here: accelerate loads torch and torch.distributed, which only the launching process needs.
    from accelerate.commands.launch import launch_command, launch_command_parser
    from accelerate.utils import patch_environment
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # `--multi_gpu` is accelerate's name for N local processes under torchrun; on a CPU they join over
    # gloo (Distributed.from_env). Its `--cpu` mode would start one process, not N.
    args = launch_command_parser().parse_args([
        "--multi_gpu", "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", "0", "-m", "tistudio", *argv])
    env = {"omp_num_threads": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n))),
           "torch_elastic_shutdown_timeout": os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SAVE_GRACE_S))}
    try:
        with patch_environment(**env):
            launch_command(args)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        return next((c if c > 0 else 128 - c for c in codes if c), 1)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0

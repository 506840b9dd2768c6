"""Training-step cost: the suite's loop against a bare ``svi.step`` and hand-written PyTorch.

    python -m bench.train_step [--repeats 15] [--steps 20] [--graph | --jit | --compile networks|loss] [--deferred]
                               [--recorded] [--captured] [--device cpu|cuda] [--batch-sizes 32,128,512]
    python -m bench.train_step --host-syncs [--device cuda] [--batch-sizes 128]

For each architecture and batch size, times ``--steps`` steps of
- suite: an epoch of ``inference.training.fit`` (permutation, index slicing, the Trace_ELBO
  step, loss bookkeeping), from the seconds it reports for its second epoch;
- svi.step: ``pyro.infer.SVI(model, guide, pyro.optim.Adam, Trace_ELBO()).step(batch)``;
- PyTorch: the same ELBO written by hand on the same networks, with ``torch.optim.Adam``;
and prints per-step times and the ratios suite/svi.step and suite/PyTorch.

``--graph`` and ``--jit`` time the suite with ``objective=graph_trace_elbo`` and
``objective=jit_trace_elbo``. ``--compile`` measures ``torch.compile`` as a lever: the suite's step on copies of the networks
with the encoder and decoder compiled (``networks``), or with the whole loss compiled
(``loss``: Dynamo breaks the graph at every Pyro message); the other columns stay eager.
``--deferred`` adds the suite with a fused Adam (``optim.fused=true``, the default of runs),
with the per-step finite check and with the check kept on the device
(``train.finite_check=deferred``, CUDA's default). ``--recorded`` adds the default step as a
CPU run takes it (``trace_elbo``, fused Adam, the per-step check) beside the same step with the
loss recorded (``graph_trace_elbo``): whether recording pays on the CPU. ``--captured`` (CUDA only) adds the suite's
step captured as a CUDA graph (``objective=graph_trace_elbo train.cuda_graphs=true``) and the
hand-written step captured the same way (three warm-up steps, then ``torch.cuda.graph``), each
replayed on a static copy of the batch.

``--host-syncs`` times nothing: it counts, with ``torch.profiler``, the host reads in an epoch of
200 steps of the default objective (``trace_elbo``, fused Adam, the finite check deferred as on
CUDA by default) beside the hand-written eager loop: device synchronisations and copies from the
device to the host (a ``.item()`` of a device value). A step without a host read shows as counts
near 200 / ``log_every`` (the loop's reads) rather than 200 or more.
"""

import argparse
import copy
import math
from functools import partial

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO

from inference.data import Dataset
from inference.training import fit, parameters_of
from inference.training.capture import capturable
from inference.training.objectives import GraphTrace_ELBO, LeanTrace_ELBO

from .common import ARCHITECTURES, benchmark_device, binary_data, interleaved, machine, make_vae, synchronize

LOG_2PI = math.log(2 * math.pi)


def handwritten_loss(model, guide, x):
    """The negative single-sample ELBO of the batch, written directly in PyTorch."""
    z_loc, z_scale = guide.posterior_params(x)
    z = z_loc + z_scale * torch.randn_like(z_loc)
    x_logits = model.decoder(z)
    log_px_z = -F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(-1)
    log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
    log_qz = (-0.5 * ((z - z_loc) / z_scale) ** 2 - z_scale.log() - 0.5 * LOG_2PI).sum(-1)
    return -(log_px_z + log_pz - log_qz).sum()


def handwritten_step(model, guide, optimizer, x):
    """One Adam step on :func:`handwritten_loss`."""
    loss = handwritten_loss(model, guide, x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class CompiledLoss:
    """``LeanTrace_ELBO`` on fixed programs, its ``differentiable_loss`` compiled by ``torch.compile``."""

    def __init__(self, model, guide):
        elbo = LeanTrace_ELBO()
        self.loss = torch.compile(lambda x: elbo.differentiable_loss(model, guide, x))

    def differentiable_loss(self, model, guide, x):
        return self.loss(x)


def handwritten_captured(model, guide, batch: torch.Tensor, lr: float = 1e-3):
    """The hand-written step captured as a CUDA graph, as torch.cuda.graph's documentation
    captures a whole training step: ``replay(x)`` copies ``x`` into the graph's static batch and
    replays it."""
    optimizer = torch.optim.Adam(parameters_of(model, guide), lr=torch.tensor(lr, device=batch.device), fused=True, capturable=True)
    static = batch.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            handwritten_step(model, guide, optimizer, static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        handwritten_loss(model, guide, static).backward()
        optimizer.step()

    def replay(x: torch.Tensor) -> None:
        static.copy_(x)
        graph.replay()

    # The graph holds the networks' parameters, gradients and the optimizer's state by address
    # and owns none of them: without these references they are freed on return, and the replays
    # write into memory that other tensors reuse, or that a later capture's empty_cache() returns
    # to the driver (an illegal memory access).
    replay.keep_alive = (model, guide, optimizer)
    return replay


def suite_objective(model, guide, objective: str, compile: str | None):
    """The suite's programs and loss for the chosen lever (copies of the networks when compiled)."""
    if compile is None:
        losses = {"trace_elbo": LeanTrace_ELBO, "graph_trace_elbo": GraphTrace_ELBO, "jit_trace_elbo": partial(JitTrace_ELBO, ignore_jit_warnings=True)}
        return model, guide, losses[objective]()
    model, guide = copy.deepcopy(model), copy.deepcopy(guide)
    if compile == "networks":
        model.decoder, guide.encoder = torch.compile(model.decoder), torch.compile(guide.encoder)
        return model, guide, LeanTrace_ELBO()
    return model, guide, CompiledLoss(model, guide)


def bench_setup(arch: tuple, batch_size: int, steps: int, device: torch.device) -> tuple:
    """``steps`` batches of binary data on ``device`` (as a Dataset whose test split is one
    batch), and the architecture's model and guide there."""
    x = binary_data(steps * batch_size, arch[0]).to(device)
    data = Dataset("bench", x, x[:0], x[:batch_size], image_shape=(arch[0],))
    model, guide = make_vae(*arch)
    return x, data, model.to(device), guide.to(device)


def bench(
    arch: tuple, batch_size: int, steps: int, repeats: int, objective: str, compile: str | None = None, deferred: bool = False,
    device: torch.device = torch.device("cpu"), captured: bool = False, recorded: bool = False,
) -> dict[str, float]:
    x, data, model, guide = bench_setup(arch, batch_size, steps, device)
    batch = x[:batch_size]
    optimizer = torch.optim.Adam(parameters_of(model, guide), lr=1e-3)
    suite_model, suite_guide, loss = suite_objective(model, guide, objective, compile)
    suite_optimizer = optimizer if suite_model is model else torch.optim.Adam(parameters_of(suite_model, suite_guide), lr=1e-3)

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())

    def svi_steps():
        for _ in range(steps):
            svi.step(batch)

    def torch_steps():
        for _ in range(steps):
            handwritten_step(model, guide, optimizer, batch)

    # fit() reports each epoch's seconds (its SVI loop alone); time the second epoch, so that a
    # compiled objective's first-call compilation is not counted.
    suite_times = {"suite": [], "fused": [], "deferred": [], "captured": [], "default": [], "recorded": []}

    def suite_loop(name: str = "suite", optimizer: torch.optim.Optimizer = suite_optimizer, loss=loss, networks=(suite_model, suite_guide)):
        summary = fit(
            *networks, data, optimizer, epochs=2, batch_size=batch_size, progress=False, loss=loss,
            deferred_check=name in ("deferred", "captured"), cuda_graphs=name == "captured",
        )
        suite_times[name].append(summary["curve"][1]["seconds"])

    loops = {"suite": suite_loop, "svi.step": svi_steps, "PyTorch": torch_steps}
    if deferred:
        fused = torch.optim.Adam(parameters_of(suite_model, suite_guide), lr=1e-3, fused=True)
        loops["fused"] = partial(suite_loop, "fused", fused)
        loops["deferred"] = partial(suite_loop, "deferred", fused)
    if recorded:
        fused = torch.optim.Adam(parameters_of(suite_model, suite_guide), lr=1e-3, fused=True)
        loops["default"] = partial(suite_loop, "default", fused, LeanTrace_ELBO())
        loops["recorded"] = partial(suite_loop, "recorded", fused, GraphTrace_ELBO())
    if captured:
        if device.type != "cuda":
            raise SystemExit("--captured captures CUDA graphs: it needs --device cuda")
        # each captured step on its own copies of the networks: a graph holds its parameters'
        # gradients by address, which the other loops' zero_grad(set_to_none=True) would drop
        captured_networks = copy.deepcopy(model), copy.deepcopy(guide)
        captured_optimizer = capturable(torch.optim.Adam(parameters_of(*captured_networks), lr=1e-3, fused=True))
        loops["captured"] = partial(suite_loop, "captured", captured_optimizer, GraphTrace_ELBO(), captured_networks)
        replay = None
        batches = x.split(batch_size)

        def torch_captured():
            nonlocal replay
            if replay is None:  # captured at its first call, after the suite's loops have recorded their graphs
                replay = handwritten_captured(copy.deepcopy(model), copy.deepcopy(guide), batch)
            for i in range(steps):
                replay(batches[i])

        loops["PyTorch captured"] = torch_captured
    times = interleaved(loops, repeats)
    for name, measured in suite_times.items():
        if measured:
            times[name] = sorted(measured)[len(measured) // 2]
    return {name: t / steps for name, t in times.items()}


# The host waits for the device in a synchronize call; a read of a device value is a DtoH copy
# (``.item()`` on a CPU tensor, as torch.optim.Adam's step count, is neither, so it is not counted)
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "Memcpy DtoH")


def host_syncs(arch: tuple, batch_size: int, device: torch.device, steps: int = 200, log_every: int = 50) -> dict[str, dict[str, int]]:
    """Counts of each of ``SYNC_EVENTS`` in one epoch of ``steps`` steps, for the suite's default
    step (deferred check) and the hand-written eager loop, after one warm-up epoch each."""
    x, data, model, guide = bench_setup(arch, batch_size, steps, device)
    fused = torch.optim.Adam(parameters_of(model, guide), lr=1e-3, fused=True)
    hand_optimizer = torch.optim.Adam(parameters_of(model, guide), lr=1e-3)

    def suite_epoch():
        fit(model, guide, data, fused, epochs=1, batch_size=batch_size, log_every=log_every, progress=False, loss=LeanTrace_ELBO(), deferred_check=True)

    def torch_epoch():
        for batch in x.split(batch_size):
            handwritten_step(model, guide, hand_optimizer, batch)

    counts = {}
    for name, epoch in {"suite (trace_elbo, deferred)": suite_epoch, "PyTorch eager": torch_epoch}.items():
        epoch()
        synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as profile:
            epoch()
            synchronize()
        events = [event.name for event in profile.events()]
        counts[name] = {sync: sum(event.startswith(sync) for event in events) for sync in SYNC_EVENTS}
    return counts


def print_host_syncs(device: torch.device, batch_sizes: list[int], steps: int = 200, log_every: int = 50) -> None:
    print(f"# host reads in one epoch of {steps} steps (log_every={log_every}), torch.profiler, {machine(device)}")
    print("| architecture | batch | loop | " + " | ".join(SYNC_EVENTS) + " |")
    print("|---|---:|---|" + "---:|" * len(SYNC_EVENTS))
    for name, arch in ARCHITECTURES.items():
        for batch_size in batch_sizes:
            for loop, counts in host_syncs(arch, batch_size, device, steps, log_every).items():
                print(f"| {name} | {batch_size} | {loop} | " + " | ".join(str(counts[sync]) for sync in SYNC_EVENTS) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--validation", action=argparse.BooleanOptionalAction, default=False, help="Pyro's validation checks (off in training runs)")
    lever = parser.add_mutually_exclusive_group()
    lever.add_argument("--graph", action="store_true", help="the suite with objective=graph_trace_elbo")
    lever.add_argument("--jit", action="store_true", help="the suite with objective=jit_trace_elbo")
    lever.add_argument("--compile", choices=["networks", "loss"], help="the suite with torch.compile on its networks or its whole loss")
    parser.add_argument("--deferred", action="store_true", help="also the suite with a fused Adam and the finite check on the device")
    parser.add_argument("--recorded", action="store_true", help="also the default step as a CPU run takes it, and the same with the loss recorded")
    parser.add_argument("--captured", action="store_true", help="also the suite's step and the hand-written one captured as CUDA graphs (CUDA only)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-sizes", default="32,128,512", help="comma-separated")
    parser.add_argument("--only", default="", help="the architectures whose name contains this (e.g. IWAE)")
    parser.add_argument("--host-syncs", action="store_true", help="count the host reads of an epoch with torch.profiler instead of timing")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    pyro.set_rng_seed(0)
    pyro.enable_validation(args.validation)
    if args.host_syncs:
        return print_host_syncs(device, [int(b) for b in args.batch_sizes.split(",")])
    objective = "jit_trace_elbo" if args.jit else "graph_trace_elbo" if args.graph else "trace_elbo"
    lever = f", torch.compile of its {args.compile}" if args.compile else ""
    print(f"# training step, {machine(device)}, Pyro validation {'on' if args.validation else 'off'}, suite objective={objective}{lever}")
    print(f"# median of {args.repeats} interleaved repeats of {args.steps} steps")
    extra = " fused ms | fused, deferred ms | fused / suite | deferred / fused |" if args.deferred else ""
    extra += " default ms | recorded ms | recorded / default |" if args.recorded else ""
    extra += " captured ms | PyTorch captured ms | captured / PyTorch | captured / PyTorch captured |" if args.captured else ""
    print(f"| architecture | batch | suite ms | svi.step ms | PyTorch ms | suite / svi.step | suite / PyTorch | svi.step / PyTorch |{extra}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|---:|---:|" * (args.deferred + args.captured) + "---:|---:|---:|" * args.recorded)
    for name, arch in ARCHITECTURES.items():
        if args.only not in name:
            continue
        for batch_size in map(int, args.batch_sizes.split(",")):
            t = bench(arch, batch_size, args.steps, args.repeats, objective, args.compile, args.deferred, device, args.captured, args.recorded)
            deferred = (
                f" {1e3 * t['fused']:.2f} | {1e3 * t['deferred']:.2f} | {t['fused'] / t['suite']:.2f} | {t['deferred'] / t['fused']:.2f} |" if args.deferred else ""
            )
            if args.recorded:
                deferred += f" {1e3 * t['default']:.2f} | {1e3 * t['recorded']:.2f} | {t['recorded'] / t['default']:.2f} |"
            if args.captured:
                deferred += (
                    f" {1e3 * t['captured']:.2f} | {1e3 * t['PyTorch captured']:.2f} | {t['captured'] / t['PyTorch']:.2f}"
                    f" | {t['captured'] / t['PyTorch captured']:.2f} |"
                )
            print(
                f"| {name} | {batch_size} | {1e3 * t['suite']:.2f} | {1e3 * t['svi.step']:.2f} | {1e3 * t['PyTorch']:.2f} "
                f"| {t['suite'] / t['svi.step']:.2f} | {t['suite'] / t['PyTorch']:.2f} | {t['svi.step'] / t['PyTorch']:.2f} |{deferred}",
                flush=True,
            )


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Where one nnctl W1 training step spends its time, phase by phase.

    python benchmarks/profile_step.py [--batch 128] [--threads N] [--steps 200] [--cpu]

Runs the phases ``Network.gradients`` is made of (forward into the cached buffers, the output
head: loss and s^L, backprop) plus the batch gather and the SGD update, timed separately,
and the 8 matrix products alone for comparison. ``--cpu`` times with the main thread's CPU clock
(meaningful with ``--threads 1`` on a busy machine). Minimum over 5 rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.run import gemm_operands  # noqa: E402
from benchmarks.workload import NnctlTrainer, make_w1  # noqa: E402
from nnctl.engine.costs import softmax_cce  # noqa: E402
from nnctl.engine.network import ForwardBuffers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cpu", action="store_true", help="main-thread CPU time instead of wall time")
    args = parser.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    clock = time.thread_time if args.cpu else time.perf_counter
    batch, steps = args.batch, args.steps
    data = make_w1(max(batch * steps, 8192))
    trainer = NnctlTrainer(batch)
    net, optimizer, state, lr = trainer.net, trainer.optimizer, trainer.state, trainer.lr
    xb, tb = trainer.xb, trainer.tb
    order = np.random.default_rng(0).permutation(data.rows)[: batch * steps]
    phases = dict.fromkeys(("gather", "forward", "head", "backprop", "update"), float("inf"))
    fused = net.rule.head is not None

    for _ in range(6):  # the first round warms up; the minimum of the rest is reported
        spent = dict.fromkeys(phases, 0.0)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            t0 = clock()
            np.take(data.X, idx, axis=0, out=xb)
            np.take(data.T, idx, axis=0, out=tb)
            t1 = clock()
            buffers = net._cached(ForwardBuffers, batch, net.dtype)
            trace = net._forward(xb, None, buffers, output_activation=not fused)
            t2 = clock()
            if fused:  # what Network.gradients does, phase by phase
                _, s = softmax_cce(trace.z[-1], tb, out=trace.a[-1])
            else:
                float(net.per_sample_loss(trace, tb).mean())
                s = net.rule.sensitivity(trace.z[-1], trace.a[-1], tb)
            t3 = clock()
            grads = net._backprop(trace, s)
            t4 = clock()
            optimizer.update(net.parameters(), grads, state, lr)
            t5 = clock()
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                spent[name] += seconds
        phases = {name: min(phases[name], spent[name] / steps) for name in phases}

    ops = gemm_operands(batch, np.random.default_rng(1))
    gemm = float("inf")
    for _ in range(6):
        t0 = clock()
        for _ in range(steps):
            for a, b, c in ops:
                np.matmul(a, b, out=c)
        gemm = min(gemm, (clock() - t0) / steps)

    total = sum(phases.values())
    print(f"W1 step at batch {batch} ({'CPU' if args.cpu else 'wall'} time, µs per step)")
    for name, seconds in phases.items():
        print(f"  {name:9s} {seconds * 1e6:9.1f}  {seconds / total:6.1%}")
    print(f"  {'total':9s} {total * 1e6:9.1f}")
    print(f"  8 GEMMs alone {gemm * 1e6:9.1f}  -> outside GEMMs {1 - gemm / total:.1%} of the step")


if __name__ == "__main__":
    main()

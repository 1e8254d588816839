"""What the privacy unit costs: slice-level vs patient-level DP-SGD at one site, by accounting.

A site of ``--patients`` patients with ``--slices`` 2D training slices each trains DP-SGD with
an expected batch of ``--batch`` slices, one local epoch per round, for ``--rounds`` rounds, and
calibrates its noise to ``--epsilon`` at delta 1e-5 (PRV accountant, as ``DPTrainer`` does).

- **slice-level** (the unit medfed used before patients were known: wrong for slices): Poisson
  sampling of slices at ``q = 1 / ceil(N / B)``; epsilon is per *slice*.
- **patient-level** (``DPTrainer`` now): Poisson sampling of patients at ``q = 1 / ceil(P / b)``
  with ``b = max(1, B * P // N)`` expected patients (the same memory per batch); epsilon is per patient.
- What the slice-level run guarantees a *patient*, by group privacy: a patient takes part in a
  step when any of their ``k`` slices does (``q' = 1 - (1 - q)^k``) and moves the sum by up to
  ``k C`` (noise multiplier ``z / k``); and the noise it would need for the same epsilon per
  patient. These two rows use the RDP accountant: the PRV accountant's grid grows to gigabytes
  at noise multipliers near ``z / k``.

Pure accounting (no training): a few minutes on a loaded CPU. ``python -m benchmarks.privacy_unit``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from medfed.privacy.dp import Budget, calibrate_noise, epsilon_spent
from medfed.privacy.dp.accounting import Accountant, Mechanism
from medfed.privacy.dp.patients import patient_batch_size
from medfed.privacy.dp.trainer import poisson_plan

DELTA = 1e-5
ACCOUNTANT = Accountant.PRV


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.privacy_unit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--slices", type=int, default=20, help="training slices per patient")
    parser.add_argument("--batch", type=int, default=64, help="expected slices per batch")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=8.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Prints the noise each accounting needs and the noise in the averaged gradient."""
    options = _options(argv)
    budget, slices = Budget(options.epsilon, DELTA), options.patients * options.slices
    per_slice = poisson_plan(slices, options.batch, epochs=1)
    batch = patient_batch_size(options.batch, samples=slices, patients=options.patients)
    per_patient = poisson_plan(options.patients, batch, epochs=1)
    rows = []
    for name, plan in (("slice-level (per slice)", per_slice), ("patient-level", per_patient)):
        steps = plan.steps * options.rounds
        z = calibrate_noise(budget, sample_rate=plan.sample_rate, steps=steps, accountant=ACCOUNTANT)
        rows.append((name, plan.sample_rate, steps, z, options.epsilon, z / plan.expected_batch_size))
    k, z_slice = options.slices, rows[0][3]
    joined = 1 - (1 - per_slice.sample_rate) ** k
    steps = per_slice.steps * options.rounds
    group = epsilon_spent([Mechanism(z_slice / k, joined, steps)], delta=DELTA, accountant=Accountant.RDP)
    rows.append(("slice-level, per patient (group bound, RDP)", joined, steps, z_slice, group, rows[0][5]))
    needed = k * calibrate_noise(budget, sample_rate=joined, steps=steps, accountant=Accountant.RDP)
    rows.append(
        (
            "slice-level noise for the same per-patient eps (RDP)",
            joined,
            steps,
            needed,
            options.epsilon,
            needed / per_slice.expected_batch_size,
        )
    )
    print(
        f"{options.patients} patients x {options.slices} slices, batch {options.batch} slices, "
        f"{options.rounds} rounds of 1 epoch, delta {DELTA}, {ACCOUNTANT.value}"
    )
    print("| accounting | q | steps | noise multiplier z | epsilon | noise std of the mean gradient / C |")
    print("|---|---|---|---|---|---|")
    for name, q, steps, z, epsilon, std in rows:
        shown = "inf" if math.isinf(epsilon) else f"{epsilon:.3g}"
        print(f"| {name} | {q:.4f} | {steps} | {z:.3f} | {shown} | {std:.4f} |")


if __name__ == "__main__":
    main()

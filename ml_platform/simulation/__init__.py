"""Synthetic data and drills: deterministic generators of the shipped datasets, damage for
the validation drills, and landing simulated days as an upstream system would. Production
code never imports this package; the CLI's `simulate` and `demo`, the tests and the
benchmarks do."""

"""Side-by-side performance harnesses (not tests): `python -m benchmarks --help`."""

"""nepbench: reproducible benchmarks of NEP interatomic potentials for Li-Si-C anodes against CP2K DFT."""

__version__ = "0.1.0"

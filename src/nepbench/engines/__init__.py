"""Engines: one interface (single_point, md) over CP2K, the CPU NEP binding and GPUMD."""

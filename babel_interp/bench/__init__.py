"""Measurements behind the benchmarks and the GPU check: training throughput against a plain
PyTorch GPT, the logit lens's memory against a full cache, and the peak tensor memory of
training steps (what :mod:`babel_interp.planner` predicts). The scripts in ``benchmarks/`` and
``python -m babel_interp.experiments.gpu_check`` are thin layers over these functions."""

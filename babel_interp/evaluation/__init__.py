"""Execution-based evaluation: problems, the sandbox that runs generated programs, sampling from
hooked models, pass@k, and the per-checkpoint evaluation of a run.

Only this subpackage runs generated code, and only inside :mod:`babel_interp.evaluation.sandbox`.
"""

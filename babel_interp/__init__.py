"""babel-interp: how code language models acquire new programming languages, on TransformerLens.

The library follows one direction of data flow: sources -> corpus (language-labelled shards) ->
mixture -> trainer (hooked model, checkpoints) -> analyzers (working language, neurons, transfer,
stages) -> corpus optimizer -> experiments and reports.
"""

__version__ = "0.1.0"

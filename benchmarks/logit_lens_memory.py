"""Working-language logit lens: throughput and peak memory against the naive full-cache method.

The measurement is :func:`babel_interp.bench.logit_lens.measure_logit_lens_memory` (also run
by ``python -m babel_interp.experiments.gpu_check``); this script is its command line.

Both methods decode the same probe and control prompts (the same token ids, batches and layers)
on the same randomly initialized model:

* reference: ``run_with_cache()`` with no ``names_filter`` (every activation kept), then for each
  residual hook the full logit lens over every position (``[batch, pos, vocab]`` logits and a full
  softmax), then the probe's last position is read;
* project: :func:`babel_interp.analysis.working_language.logit_lens.analyze_working_language`
(hooks keep one
  position per row, the forward stops after the last residual, vocabulary streamed in chunks).

Printed: probes per second, peak memory above the loaded model, the ratios, the largest
disagreement between the two (a correctness check), and the project's peak memory as the number
of probes and of decoded layers grows (it should stay flat). Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU and the process's peak resident set (``VmHWM``, reset
through ``/proc/self/clear_refs``) on a CPU.

Reference figure (H200, GPT-2-small shape, 2,048 tokens): full-cache logit lens 13.4 GB peak,
residual-only 2.7 GB. Usage::

    python benchmarks/logit_lens_memory.py                       # GPT-2-small shape, CPU
    python benchmarks/logit_lens_memory.py --device cuda --n-probes 64
    python benchmarks/logit_lens_memory.py --preset pilot --d-vocab 8192   # quick
"""

from babel_interp.bench.logit_lens import main

if __name__ == "__main__":
    main()

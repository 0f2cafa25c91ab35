"""Run the analyzers on a user's own pretrained hooked model with its own tokenizer.

The model can be any TransformerLens hooked model: one saved by ``babel_interp.model.save_model``
(a directory), one loaded by name with ``from_pretrained`` where a model hub is reachable, or a
model object passed to :func:`analyze_pretrained` from Python. Two analyses run on it:

* working language: logit-lens masses on the primary and target built-in identifier sets, with
  matched controls and the competence gate, on the project's synthetic probes or a probe JSONL;
* language-specific and transferring neurons (LAPE with a permutation null), on language-pure
  windows of source text tokenized with the model's own tokenizer (local source trees given as
  ``LANG=PATH``, or the synthetic generator's documents).

    python -m babel_interp.experiments.analyze_pretrained \\
        --model runs/x/checkpoints/step_00000100 --primary python --target php --out out/pretrained
    python -m babel_interp.experiments.analyze_pretrained --model gpt2 \\
        --source python=/usr/lib/python3.11 --source php=vendor/ --target php \\
        --out out/gpt2  # where the hub is reachable
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from babel_interp.config import ConfigBase
from babel_interp.io import write_csv_atomic, write_json_atomic


@dataclass
class PretrainedAnalysisConfig(ConfigBase):
    """What to analyze on a pretrained model."""

    out: str = "runs/pretrained"
    primary: str = "python"
    target: str = "php"
    probes: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    n_per_pair: int = 10
    docs_per_language: int = 200
    tokens_per_language: int = 16384
    window: int = 128
    n_null_permutations: int = 20
    seed: int = 0
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from babel_interp.languages import get_language

        # Language names are normalized ("c#" -> "csharp") before they are checked.
        self.primary = get_language(self.primary).name
        self.target = get_language(self.target).name
        self.sources = {get_language(k).name: v for k, v in self.sources.items()}
        self.validate()

    def validate(self) -> None:
        if self.primary == self.target:
            raise ValueError("PretrainedAnalysisConfig.target must differ from primary")
        for name in ("n_per_pair", "docs_per_language", "tokens_per_language", "window"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"PretrainedAnalysisConfig.{name} must be positive")
        unknown = set(self.sources) - {self.primary, self.target}
        if unknown:
            raise ValueError(
                f"PretrainedAnalysisConfig.sources names {sorted(unknown)}, which are neither "
                f"the primary ({self.primary}) nor the target ({self.target})"
            )
        if self.probes is not None and not Path(self.probes).is_file():
            raise FileNotFoundError(f"probe file {self.probes} does not exist")


def load_user_model(spec: str, tokenizer: str | None = None, device: str | None = None) -> Any:
    """A hooked model from a saved directory or, where a hub is reachable, a model name."""
    from babel_interp.model import load_model, load_pretrained, prepare_tokenizer

    path = Path(spec)
    if path.is_dir() and (path / "model_config.json").is_file():
        model, _ = load_model(path, device=device)
        if tokenizer is not None:
            model.set_tokenizer(prepare_tokenizer(tokenizer))
        return model
    if path.exists():
        raise FileNotFoundError(
            f"{spec} is not a saved model directory (no model_config.json); save one with "
            "babel_interp.model.save_model, or give a model name to load with from_pretrained"
        )
    return load_pretrained(spec, tokenizer=tokenizer, device=device)


def _texts(cfg: PretrainedAnalysisConfig, language: str) -> Iterable[str]:
    if language in cfg.sources:
        from babel_interp.corpus.sources import iter_local_tree

        docs = iter_local_tree(cfg.sources[language], language=language)
        for i, doc in enumerate(docs):
            if i >= cfg.docs_per_language:
                break
            yield doc.text
        return
    from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents

    scfg = SyntheticConfig(
        languages=[language], docs_per_language=cfg.docs_per_language, seed=cfg.seed + 7919
    )
    for doc in generate_documents(scfg):
        yield doc.text


def language_windows(
    tokenizer: Any, cfg: PretrainedAnalysisConfig, languages: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Language-pure ``[n, window]`` token windows per language, tokenized by the model's own
    tokenizer (documents joined by its EOS token, as in pretraining)."""
    eos = tokenizer.eos_token_id
    out = {}
    for lang in languages:
        ids: list[int] = []
        budget = cfg.tokens_per_language + cfg.window
        for text in _texts(cfg, lang):
            ids.extend(tokenizer.encode(text, add_special_tokens=False))
            if eos is not None:
                ids.append(eos)
            if len(ids) >= budget:
                break
        n = len(ids) // cfg.window
        if n == 0:
            raise ValueError(f"no {lang} text to analyze: got {len(ids)} tokens")
        out[lang] = torch.tensor(ids[: n * cfg.window], dtype=torch.long).view(n, cfg.window)
    return out


def analyze_pretrained(model: Any, tokenizer: Any, cfg: PretrainedAnalysisConfig) -> Path:
    """Both analyses on ``model``; tables, figures and a report under ``cfg.out``. Returns the
    report's Markdown path."""
    import pandas as pd

    from babel_interp.analysis.neurons.lape import LapeConfig, lape
    from babel_interp.analysis.neurons.neuron_stats import NeuronStatsConfig, collect_neuron_stats
    from babel_interp.analysis.neurons.transferring import counts_per_layer, transferring_sets
    from babel_interp.analysis.working_language.logit_lens import (
        WorkingLanguageConfig,
        aggregate_records,
        analyze_working_language,
        competence_table,
    )
    from babel_interp.analysis.working_language.probes import build_probes, load_probes_jsonl
    from babel_interp.report.document import ReportDocument
    from babel_interp.report.working_language_plots import depth_lines

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    wl_cfg = WorkingLanguageConfig(
        primary=cfg.primary, target=cfg.target, n_per_pair=cfg.n_per_pair, seed=cfg.seed
    )
    if cfg.probes:
        probes = load_probes_jsonl(cfg.probes)
    else:
        # The model's own tokenizer decides which controls end in the probe's last token.
        probes = build_probes(
            cfg.primary, cfg.target, n_per_pair=cfg.n_per_pair, seed=cfg.seed, tokenizer=tokenizer
        )
    with torch.no_grad():
        result = analyze_working_language(model, tokenizer, probes, wl_cfg, progress=cfg.progress)
    records = result.to_dataframe()
    agg = aggregate_records(records, wl_cfg)
    comp = competence_table(records, wl_cfg)
    write_csv_atomic(out / "working_language_aggregate.csv", agg)
    write_csv_atomic(out / "working_language_competence.csv", comp)
    depth = depth_lines(agg, wl_cfg.lens, out / "working_language_depth.png")

    windows = language_windows(tokenizer, cfg, [cfg.primary, cfg.target])
    stats = collect_neuron_stats(
        model,
        windows,
        NeuronStatsConfig(tokens_per_language=cfg.tokens_per_language),
        progress=cfg.progress,
    )
    lape_result = lape(stats, LapeConfig())
    sets = transferring_sets(lape_result, cfg.primary, cfg.target)
    counts = (
        pd.DataFrame({name: counts_per_layer(mask).tolist() for name, mask in sets.items()})
        .rename_axis("layer")
        .reset_index()
    )
    write_csv_atomic(out / "neuron_counts.csv", counts)

    doc = ReportDocument(f"Analyzers on a pretrained model: {cfg.primary} -> {cfg.target}")
    doc.heading("Working language (logit lens)")
    doc.text(
        f"{len(probes)} probes; competence gate: output top-1 on the target identifier "
        f"{float(comp['top1_acc'].iloc[0]):.1%} (threshold {wl_cfg.competence_threshold:.0%}; "
        f"{'competent' if bool(comp['competent'].iloc[0]) else 'not competent: uninformative'})."
    )
    cols = [
        "layer",
        "layer_pos",
        "share_primary",
        "excess_matched",
        "excess_matched_lo",
        "excess_matched_hi",
        "p_primary",
        "p_target",
    ]
    doc.table(agg[[c for c in cols if c in agg.columns]], "Per layer, against matched controls")
    doc.figure(depth, "Primary-language lean across depth")
    doc.heading("Language-transferring neurons (LAPE)")
    doc.table(counts, "Neurons per layer in each set")
    write_json_atomic(out / "config.json", cfg.to_dict())
    md, _ = doc.write(out)
    return md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m babel_interp.experiments.analyze_pretrained",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--model", required=True, help="saved model directory or model name")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the model's own)")
    parser.add_argument("--primary", default="python")
    parser.add_argument("--target", default="php")
    parser.add_argument("--probes", help="probe JSONL (default: synthetic probes)")
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="LANG=PATH",
        help="source tree for the neuron analysis (default: synthetic documents)",
    )
    parser.add_argument("--out", default="runs/pretrained")
    parser.add_argument("--tokens-per-language", type=int, default=16384)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bars"
    )
    args = parser.parse_args(argv)
    try:
        sources = dict(s.split("=", 1) for s in args.source)
    except ValueError:
        print(
            f"analyze_pretrained: error: --source must be LANG=PATH, got {args.source}",
            file=sys.stderr,
        )
        return 2
    try:
        cfg = PretrainedAnalysisConfig(
            out=args.out,
            primary=args.primary,
            target=args.target,
            probes=args.probes,
            sources=sources,
            tokens_per_language=args.tokens_per_language,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
        )
        model = load_user_model(args.model, args.tokenizer, args.device)
    except (ValueError, FileNotFoundError) as exc:
        print(f"analyze_pretrained: error: {exc}", file=sys.stderr)
        return 2
    if getattr(model, "tokenizer", None) is None:
        print(
            "analyze_pretrained: error: the model has no tokenizer; pass --tokenizer DIR",
            file=sys.stderr,
        )
        return 2
    md = analyze_pretrained(model, model.tokenizer, cfg)
    print(f"report: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

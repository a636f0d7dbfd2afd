"""Study files: a TOML study parsed into validated, frozen dataclasses.

This module is the schema and its validation only: ``lawsearch.study`` turns a
``StudyConfig`` into a trainer, pruner, sampler and search, and
``lawsearch.storage`` opens its storage.

``load_study(path)`` reads a study such as ``studies/demo.toml`` and checks
everything that can be checked before any training starts: unknown keys (with
the closest valid key suggested), value types and ranges, mixture bounds that
no point of the simplex satisfies, missing corpus files, a short budget too
short for the law to fit, and storages that cannot host parallel workers.
Every error is a ``ValueError`` whose message starts with the dotted key
(``search.survivors``) and says how to fix it.

Sections::

    [study]        name, seed, storage, dir
    [model]        config (any transformers causal LM), init (local weights), or the
                   Llama shorthand (hidden_size, num_layers, num_heads, ...)
    [tokenizer]    path (a local pretrained tokenizer), or vocab_size, min_frequency,
                   sample_bytes of a BPE trained on the corpus
    [corpus]       max_bytes_per_domain, held_out_fraction, held_out_documents,
                   text_field, cache_dir, num_proc
    [domains.NAME] builtin = "..." | paths = [...] (files, folders, globs) | dataset = "...";
                   format, text_field; low, high (mixture bounds)
    [search_space] mixture_low/high, schedules, peak_lr, warmup, decay_fraction, ...
    [budgets]      short_tokens, full_tokens (converted to steps with batch x seq_len)
    [objective]    domain | weights (default: the mean held-out loss over domains)
    [law]          name + the law's own options
    [pruner]       caution (the one knob), quantile, min_points, keep_fraction
    [search]       candidates, survivors, rungs
    [train]        batch_size, seq_len, eval_every, device, dtype, compile, ...
"""

from lawsearch.config._load import builtin_domains, load_study, parse_study
from lawsearch.config._schema import (
    BudgetsConfig,
    CorpusConfig,
    DomainConfig,
    LawConfig,
    ModelConfig,
    ObjectiveConfig,
    PrunerConfig,
    SearchConfig,
    SearchSpaceConfig,
    StudyConfig,
    StudySection,
    TokenizerConfig,
    TrainConfig,
)

__all__ = [
    "BudgetsConfig",
    "CorpusConfig",
    "DomainConfig",
    "LawConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "PrunerConfig",
    "SearchConfig",
    "SearchSpaceConfig",
    "StudyConfig",
    "StudySection",
    "TokenizerConfig",
    "TrainConfig",
    "builtin_domains",
    "load_study",
    "parse_study",
]

"""Any causal LM from a config, local weights, and a pretrained tokenizer folder, all offline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("datasets")

from benchmarks._corpus import write_domain  # noqa: E402
from lawsearch.train._model import build_model  # noqa: E402
from lawsearch.train._transformers import (  # noqa: E402
    DataSpec,
    ModelSpec,
    TrainSpec,
    TransformersTrainer,
)

VOCAB = 320
#: tiny configs of three families, as a user would write them
CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 64,
        "vocab_size": VOCAB,
    },
    "qwen2": {
        "model_type": "qwen2",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "vocab_size": VOCAB,
    },
    "gpt2": {
        "model_type": "gpt2",
        "n_embd": 32,
        "n_layer": 1,
        "n_head": 2,
        "n_positions": 64,
        "vocab_size": VOCAB,
    },
    "gpt_neox": {
        "model_type": "gpt_neox",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "vocab_size": VOCAB,
    },
}


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("data")
    for name in ("a", "b"):
        write_domain(root / name, name, 40_000, fmt="jsonl")
    return {"a": str(root / "a"), "b": str(root / "b")}


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here trains on one torch thread."""


def _trainer(domains: dict[str, str], cache: str, **model: Any) -> TransformersTrainer:
    data_opts = {k: model.pop(k) for k in ("tokenizer_path",) if k in model}
    return TransformersTrainer(
        model=ModelSpec(vocab_size=VOCAB, seq_len=32, **model),
        data=DataSpec(domains=domains, cache_dir=cache, **data_opts),
        train=TrainSpec(batch_size=4, eval_every=1, eval_batches=1, device="cpu"),
    )


def _config(tmp_path: Path, family: str, **changes: Any) -> str:
    path = tmp_path / family / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**CONFIGS[family], **changes}))
    return str(path)


CONFIG = {
    "mixture": {"a": 0.5, "b": 0.5},
    "schedule": {"family": "constant", "peak_lr": 3e-3, "total_steps": 10},
}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_families_build_from_a_config_file_and_train_two_steps(
    family: str, domains: dict[str, str], cache: str, tmp_path: Path
) -> None:
    trainer = _trainer(domains, cache, config=_config(tmp_path, family))
    calls: list[tuple[int, float]] = []
    result = trainer.train(CONFIG, budget_steps=2, report=lambda s, v, e: calls.append((s, v)))
    assert [s for s, _ in calls] == [1, 2] and result.final_step == 2
    assert all(math.isfinite(v) and v < math.log(VOCAB) + 1 for _, v in calls)
    model = trainer._build_model()
    assert model.config.model_type == family
    counted = sum(p.numel() for p in model.parameters())
    assert trainer.model_spec.n_params(embeddings=True) == counted  # counted on "meta"
    assert 0 < trainer.model_spec.n_params() < counted


def test_model_weights_continue_from_a_local_folder(
    domains: dict[str, str], cache: str, tmp_path: Path
) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = _config(tmp_path, "qwen2")
    torch.manual_seed(7)
    saved = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config))
    saved.save_pretrained(tmp_path / "weights")
    spec = ModelSpec(vocab_size=VOCAB, seq_len=32, config=config, init=str(tmp_path / "weights"))
    torch.manual_seed(0)  # a fresh init would differ: the weights must come from the folder
    loaded = build_model(spec, eos_token_id=0, vocab_needed=VOCAB)
    for (name, a), b in zip(saved.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    trainer = _trainer(domains, cache, config=config, init=str(tmp_path / "weights"))
    assert trainer.train(CONFIG, budget_steps=1, report=lambda *a: None).final_step == 1
    with pytest.raises(ValueError, match=r"`model.init` = .*nowhere.*not a folder"):
        build_model(
            ModelSpec(vocab_size=VOCAB, config=config, init=str(tmp_path / "nowhere")),
            eos_token_id=0,
        )


def test_bad_model_configs_name_the_field(
    domains: dict[str, str], cache: str, tmp_path: Path
) -> None:
    small = _config(tmp_path, "llama", vocab_size=100)
    with pytest.raises(ValueError, match=r"`model.config`: vocab_size 100 is smaller than"):
        _trainer(domains, cache, config=small).train(CONFIG, budget_steps=1, report=print)
    short = _config(tmp_path / "s", "gpt2", n_positions=16)
    with pytest.raises(ValueError, match=r"`train.seq_len` = 32 is longer than the model's"):
        _trainer(domains, cache, config=short).train(CONFIG, budget_steps=1, report=print)
    (tmp_path / "odd.json").write_text(json.dumps({"model_type": "no_such_model"}))
    with pytest.raises(ValueError, match=r"`model.config` = .*odd.json.* known `model_type`"):
        build_model(ModelSpec(config=str(tmp_path / "odd.json")), eos_token_id=0)
    with pytest.raises(ValueError, match=r"`model.config` = .*missing.json.*no such file"):
        build_model(ModelSpec(config=str(tmp_path / "missing.json")), eos_token_id=0)


def test_a_pretrained_tokenizer_folder_loads_offline(
    domains: dict[str, str], cache: str, tmp_path: Path
) -> None:
    from transformers import PreTrainedTokenizerFast

    bpe = _trainer(domains, cache).tokenizer  # a BPE trained here, then saved like a user's
    PreTrainedTokenizerFast(
        tokenizer_object=bpe.backend_tokenizer, eos_token="<|endoftext|>"
    ).save_pretrained(tmp_path / "tok")
    trainer = _trainer(domains, cache, tokenizer_path=str(tmp_path / "tok"))
    assert trainer.tokenizer("def f(x)")["input_ids"] == bpe("def f(x)")["input_ids"]
    assert trainer.train(CONFIG, budget_steps=1, report=lambda *a: None).final_step == 1
    PreTrainedTokenizerFast(tokenizer_object=bpe.backend_tokenizer).save_pretrained(
        tmp_path / "no_eos"
    )
    with pytest.raises(ValueError, match=r"`tokenizer.path` = .*no_eos.*has no eos token"):
        _trainer(domains, cache, tokenizer_path=str(tmp_path / "no_eos")).prepare()
    with pytest.raises(ValueError, match=r"`tokenizer.path` = .*absent.*is not a folder"):
        _trainer(domains, cache, tokenizer_path=str(tmp_path / "absent")).prepare()

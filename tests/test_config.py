"""Study TOML parsing and up-front validation (``lawsearch.config``)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lawsearch.config import StudyConfig, load_study, parse_study
from lawsearch.study import planned_steps

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _base(tmp_path: Path) -> dict[str, Any]:
    """A small valid study with local-file domains (no builtin corpus needed)."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(f"text of domain {name}\n" * 10)
    return {
        "study": {"name": "t", "seed": 1},
        "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2},
        "tokenizer": {"vocab_size": 300},
        "domains": {
            "a": {"paths": ["a.txt"], "low": 0.1},
            "b": {"paths": ["b.txt"]},
            "c": {"paths": ["c.txt"], "high": 0.5},
        },
        "search_space": {"schedules": ["cosine", "wsd"], "peak_lr": [1e-3, 1e-2]},
        "budgets": {"short_tokens": 8 * 64 * 40, "full_tokens": 8 * 64 * 200},
        "law": {"name": "power"},
        "search": {"candidates": 6, "survivors": 2, "rungs": [0.5, 1.0]},
        "train": {"batch_size": 8, "seq_len": 64, "eval_every": 5},
    }


def _parse(tmp_path: Path, data: dict[str, Any]) -> StudyConfig:
    return parse_study(data, base_dir=tmp_path, run_root=tmp_path)


def test_valid_study_converts_budgets_and_fills_defaults(tmp_path: Path) -> None:
    cfg = _parse(tmp_path, _base(tmp_path))
    assert cfg.short_steps == 40 and cfg.full_steps == 200
    assert cfg.rung_steps == (100, 200)
    assert cfg.search.promotion == "sync"
    # 6 candidates x 40 steps, eta = sqrt(3): 3 continue to 100, then 1 to 200
    assert planned_steps(cfg) == 6 * 40 + 3 * 60 + 1 * 100
    assert cfg.run_dir == tmp_path / "runs" / "t"
    assert cfg.study.storage == str(tmp_path / "runs" / "t" / "journal.log")
    low, high = cfg.mixture_bounds
    assert low == {"a": 0.1, "b": 0.0, "c": 0.0}
    assert high == {"a": 1.0, "b": 1.0, "c": 0.5}
    assert cfg.domains[0].paths == (str(tmp_path / "a.txt"),)
    assert cfg.search_space.warmup == (0.02, 0.02)  # scalar default = fixed value
    assert cfg.law.build().name == "power"
    with pytest.raises(AttributeError):
        cfg.search.candidates = 3  # type: ignore[misc]


def test_shipped_studies_parse_except_for_their_corpus(tmp_path: Path) -> None:
    for d in ("web", "code", "books", "papers", "wiki"):  # the documented data layout
        (tmp_path / "data" / d).mkdir(parents=True)
        (tmp_path / "data" / d / "part-00000.parquet").write_bytes(b"")
    for name in ("demo.toml", "llama_mixture_gpu.toml", "llama_mixture_cpu.toml"):
        data = tomllib.loads((STUDIES / name).read_text())
        cfg = parse_study(data, base_dir=tmp_path, run_root=tmp_path)
        assert cfg.short_steps < cfg.full_steps
        assert len(cfg.domains) >= 5
        assert cfg.budgets.short_tokens <= 0.35 * cfg.budgets.full_tokens


@pytest.mark.parametrize(
    ("section", "key", "value", "match"),
    [
        ("search", "survivers", 2, r"`search.survivers` is not a known key.*'survivors'"),
        ("train", "batchsize", 2, r"`train.batchsize`.*'batch_size'"),
        ("law", "tim", "steps", r"`law.tim` is not an option of the 'power' law.*'time'"),
        (None, "budget", {}, r"`budget` is not a known key.*'budgets'"),
    ],
)
def test_unknown_key_suggests_the_closest(
    tmp_path: Path, section: str | None, key: str, value: Any, match: str
) -> None:
    data = _base(tmp_path)
    (data[section] if section else data)[key] = value
    with pytest.raises(ValueError, match=match):
        _parse(tmp_path, data)


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    cases: list[tuple[tuple[str, ...], Any, str]] = [
        (("search", "survivors"), 9, r"`search.survivors` must be in \[1, search.candidates=6\]"),
        (("train", "batch_size"), "8", r"`train.batch_size` must be an integer; got '8'"),
        (("train", "device"), "gpu", r"`train.device`.*'cpu'|`train.device`.*'cuda'"),
        (("law", "name"), "powr", r"`law.name` = 'powr'.*'power'"),
        (("search_space", "schedules"), ["cosin"], r"`search_space.schedules`.*'cosine'"),
        (("search_space", "peak_lr"), [1e-2, 1e-3], r"`search_space.peak_lr`.*low <= high"),
        (("search", "rungs"), [0.6, 0.5, 1.0], r"`search.rungs\[1\]` = 0.5 must be above"),
        (("search", "rungs"), [0.5], r"`search.rungs` must be .* ending at 1.0"),
        (("study", "storage"), "sqlite:///x.db", r"`study.storage`.*SQLite.*parallel"),
        (("study", "storage"), "redis://x", r"`study.storage`.*not supported"),
        (("budgets", "full_tokens"), 100, r"`budgets.short_tokens`.*below"),
        (("search", "promotion"), "synch", r"`search.promotion`.*'sync'"),
    ]
    for path, value, match in cases:
        data = copy.deepcopy(_base(tmp_path))
        data[path[0]][path[1]] = value
        with pytest.raises(ValueError, match=match):
            _parse(tmp_path, data)


def test_weights_outside_bounds(tmp_path: Path) -> None:
    data = _base(tmp_path)
    for dom in data["domains"].values():
        dom["low"] = 0.4
    with pytest.raises(ValueError, match=r"`domains.\*.low`.*sum to 1.2 > 1"):
        _parse(tmp_path, data)
    data = _base(tmp_path)
    data["search_space"]["mixture_high"] = 0.2
    with pytest.raises(ValueError, match=r"`domains.\*.high`.*sum to 0.9 < 1"):
        _parse(tmp_path, data)
    data = _base(tmp_path)
    data["domains"]["a"]["high"] = 1.5
    with pytest.raises(ValueError, match=r"`domains.a.high` must be in \[0, 1\]"):
        _parse(tmp_path, data)
    data = _base(tmp_path)
    data["domains"]["a"].update(low=0.6, high=0.3)
    with pytest.raises(ValueError, match=r"`domains.a`: low = 0.6 is above high = 0.3"):
        _parse(tmp_path, data)


def test_missing_corpus_path(tmp_path: Path) -> None:
    data = _base(tmp_path)
    data["domains"]["b"]["paths"] = ["b.txt", "nope/*.jsonl"]
    with pytest.raises(
        ValueError, match=r"`domains.b.paths\[1\]` = 'nope/\*.jsonl': the pattern matches no file"
    ):
        _parse(tmp_path, data)
    data = _base(tmp_path)
    data["domains"]["b"] = {"low": 0.1}
    with pytest.raises(ValueError, match=r"`domains.b` needs exactly one source.*got neither"):
        _parse(tmp_path, data)


def test_short_budget_below_the_laws_minimum_points(tmp_path: Path) -> None:
    data = _base(tmp_path)
    # 40 steps / eval_every 10 = 4 evaluations < the power law's 5 points
    data["train"]["eval_every"] = 10
    with pytest.raises(
        ValueError,
        match=r"`budgets.short_tokens` = 20,480 gives 40 steps.*4 evaluations.*needs at least 5"
        r".*raise `budgets.short_tokens` to >= 25,600",
    ):
        _parse(tmp_path, data)
    data["train"]["eval_every"] = 8  # 5 evaluations: enough
    assert _parse(tmp_path, data).short_steps == 40


def test_pruner_min_points_raises_the_floor(tmp_path: Path) -> None:
    data = _base(tmp_path)
    data["pruner"] = {"min_points": 9}
    with pytest.raises(ValueError, match=r"needs at least 9 points"):
        _parse(tmp_path, data)


def test_pruner_defaults_are_law_pruners_and_caution_is_the_knob(tmp_path: Path) -> None:
    from lawsearch.optuna import LawPruner
    from lawsearch.study import SHARED_SYNC_INTERVAL, build_pruner

    data = _base(tmp_path)
    cfg = _parse(tmp_path, data)
    built = build_pruner(cfg)
    plain = LawPruner(target_step=cfg.full_steps)
    assert isinstance(built, LawPruner) and built.sync_interval == 0.0
    for name in ("caution", "keep_fraction", "quantile", "trend_cap", "min_improvement"):
        assert getattr(built, name) == getattr(plain, name), name
    assert (built.min_points, built.rung_factor, built.min_trials) == (2, 2.0, 4)
    assert cfg.pruner.search_quantile == 0.1  # the search's cuts and the report: 80%
    # several processes on one study: a positive interval (decisions depend on timing anyway)
    assert build_pruner(cfg, shared=True).sync_interval == SHARED_SYNC_INTERVAL > 0
    data["pruner"] = {"caution": 1.0}
    careful = build_pruner(_parse(tmp_path, data))
    assert isinstance(careful, LawPruner)
    assert (careful.keep_fraction, careful.quantile) == (pytest.approx(0.6), pytest.approx(0.1))
    # an explicit setting wins over the knob, for the pruner and the search alike
    data["pruner"] = {"caution": 1.0, "keep_fraction": 0.4, "quantile": 0.2}
    cfg = _parse(tmp_path, data)
    explicit = build_pruner(cfg)
    assert isinstance(explicit, LawPruner)
    assert (explicit.keep_fraction, explicit.quantile) == (0.4, 0.2)
    assert cfg.pruner.search_quantile == 0.2
    data["pruner"] = {"caution": 1.5}
    with pytest.raises(ValueError, match=r"`pruner.caution` must be in \[0, 1\]"):
        _parse(tmp_path, data)


def test_load_study_reads_files_and_reports_toml_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"study file .*missing.toml' not found"):
        load_study(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname='x'")
    with pytest.raises(ValueError, match=r"not valid TOML"):
        load_study(bad)


def test_relative_paths_resolve_against_the_study_file(tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "x.txt").write_text("hello\n")
    (folder / "y.txt").write_text("world\n")
    (folder / "s.toml").write_text(
        '[study]\nname = "s"\nstorage = "store/j.log"\n'
        '[domains.x]\npaths = ["x.txt"]\n[domains.y]\npaths = ["y.txt"]\n'
        "[budgets]\nshort_tokens = 65536\nfull_tokens = 655360\n"
    )
    cfg = load_study(folder / "s.toml", run_root=tmp_path / "cwd")
    assert cfg.domains[0].paths == (str(folder / "x.txt"),)
    # written in the study file: read from its folder, whatever the root
    assert cfg.study.storage == str(folder / "store" / "j.log")
    # the default run folder is made under the root (the CLI's --root)
    assert cfg.run_dir == tmp_path / "cwd" / "runs" / "s"


def test_one_path_rule_study_file_paths_from_its_folder_flags_from_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths in a study file (domains, study.dir, the journal) are read from the file's folder,
    wherever the command runs; `--root` (a flag) is read from the current directory."""
    folder = tmp_path / "project" / "studies"
    folder.mkdir(parents=True)
    for name in ("x", "y"):
        (folder / f"{name}.txt").write_text(f"{name}\n")
    text = (
        '[study]\nname = "s"\n{extra}'
        '[domains.x]\npaths = ["x.txt"]\n[domains.y]\npaths = ["y.txt"]\n'
        "[budgets]\nshort_tokens = 65536\nfull_tokens = 655360\n"
    )
    (folder / "s.toml").write_text(text.format(extra=""))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_study(folder / "s.toml")
    assert cfg.run_dir == folder / "runs" / "s"
    assert cfg.study.storage == str(folder / "runs" / "s" / "journal.log")
    assert cfg.domains[0].paths == (str(folder / "x.txt"),)
    # a relative study file path from the cwd gives the same absolute folders
    monkeypatch.chdir(tmp_path / "project")
    assert load_study("studies/s.toml").run_dir == folder / "runs" / "s"
    (folder / "s.toml").write_text(text.format(extra='dir = "../out/s"\n'))
    monkeypatch.chdir(elsewhere)
    cfg = load_study(folder / "s.toml", run_root="ignored")
    assert cfg.run_dir == (folder / ".." / "out" / "s").absolute()
    assert cfg.study.storage == str((folder / ".." / "out" / "s" / "journal.log").absolute())
    # --root is a flag: relative to the current directory
    (folder / "s.toml").write_text(text.format(extra=""))
    assert (
        load_study(folder / "s.toml", run_root="here").run_dir == elsewhere / "here" / "runs" / "s"
    )


def test_data_model_and_objective_keys(tmp_path: Path) -> None:
    (tmp_path / "tok").mkdir()
    (tmp_path / "cfg.json").write_text("{}")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "p0.parquet").write_bytes(b"")
    data = _base(tmp_path)
    data["model"] = {"config": "cfg.json"}
    data["tokenizer"] = {"path": "tok", "sample_bytes": 4096}
    data["domains"]["a"] = {"paths": ["shards/*.parquet"], "format": "parquet", "text_field": "t"}
    data["objective"] = {"weights": {"a": 0.5, "b": 0.5}}
    data["corpus"] = {"num_proc": 2, "held_out_documents": 100}
    data["train"]["compile"] = True
    cfg = _parse(tmp_path, data)
    assert cfg.model.config == str(tmp_path / "cfg.json")
    assert cfg.tokenizer.path == str(tmp_path / "tok")
    assert cfg.domains[0].paths == (str(tmp_path / "shards/*.parquet"),)
    assert (cfg.domains[0].format, cfg.domains[0].text_field) == ("parquet", "t")
    assert cfg.objective.kind == "weighted" and cfg.train.compile
    assert _parse(tmp_path, _base(tmp_path)).objective.kind == "mean"


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("model", "config"), "nope.json", r"`model.config` = 'nope.json': no such file"),
        (("model", "init"), "weights/", r"`model.init` = 'weights/': no such file"),
        (("tokenizer", "path"), "tok/", r"`tokenizer.path` = 'tok/': no such file"),
        (("domains", "a"), {"paths": ["a.txt"], "format": "jsnl"}, r"`domains.a.format`.*'json'"),
        (("objective", "multi"), True, r"`objective.multi` = true is not supported yet"),
        (("objective", "domain"), "d", r"`objective.domain` = 'd' is not a domain"),
        (("objective", "weights"), {"a": 0.5, "x": 0.5}, r"`objective.weights.x` is not a domain"),
        (("objective", "weights"), {"a": 0.5, "b": 0.4}, r"must sum to 1 \(got 0.9\)"),
        (("law", "name"), "temporal", r"'temporal' needs `pruner.enabled = false`"),
        (("corpus", "num_proc"), 0, r"`corpus.num_proc` must be >= 1"),
        (("search", "max_retries"), -1, r"`search.max_retries` must be >= 0"),
        (("search", "pool_lr_ratio"), 0.5, r"`search.pool_lr_ratio` must be >= 1 .* or 0"),
        (("search", "explore_fraction"), 1.5, r"`search.explore_fraction` must be in \[0, 1\]"),
        (("pruner", "warmup_steps"), -1, r"`pruner.warmup_steps` must be >= 0"),
        (("search", "rank"), "lost", r"`search.rank` must be one of \['law', 'loss'\].*'loss'"),
        (("search", "explore_fraction"), -0.1, r"`search.explore_fraction` must be in \[0, 1\]"),
        (("study", "heartbeat_interval"), 0, r"`study.heartbeat_interval` must be >= 1"),
        (("study", "grace_period"), 30, r"`study.grace_period` \(30 s\) must be longer"),
        (("study", "reconnect_timeout"), 0, r"`study.reconnect_timeout` must be > 0 seconds"),
        (("study", "reconnect_timeout"), -5.5, r"`study.reconnect_timeout` must be > 0"),
        (("study", "reconnect_timeout"), "2m", r"`study.reconnect_timeout` must be a number"),
        (("train", "keep_checkpoints"), "neded", r"`train.keep_checkpoints`.*'needed'"),
        (("study", "heartbeat_interval"), 1.5, r"`study.heartbeat_interval` must be an integer"),
    ],
)
def test_bad_new_keys_name_the_field(
    tmp_path: Path, path: tuple[str, str], value: Any, match: str
) -> None:
    data = _base(tmp_path)
    data.setdefault(path[0], {})[path[1]] = value
    with pytest.raises(ValueError, match=match):
        _parse(tmp_path, data)


def test_explore_fraction_reaches_the_sampler(tmp_path: Path) -> None:
    from lawsearch.study import build_sampler

    data = _base(tmp_path)
    sampler = build_sampler(_parse(tmp_path, data))
    assert sampler.explore_fraction == 0.5  # the default: every other candidate after start-up
    assert [sampler._explores(i) for i in range(4)] == [False, True, False, True]
    data.setdefault("search", {})["explore_fraction"] = 0.0
    sampler = build_sampler(_parse(tmp_path, data))
    assert not any(sampler._explores(i) for i in range(8))


def test_pruner_warmup_steps_reaches_the_pruner(tmp_path: Path) -> None:
    from lawsearch.study import build_pruner

    data = _base(tmp_path)
    assert build_pruner(_parse(tmp_path, data)).warmup_steps == 0
    data.setdefault("pruner", {})["warmup_steps"] = 12
    pruner = build_pruner(_parse(tmp_path, data))
    assert pruner.warmup_steps == 12
    assert [pruner.rung_of(s) for s in (6, 11, 12, 24, 47)] == [0, 0, 1, 2, 2]


def test_search_rank_reaches_the_search(tmp_path: Path) -> None:
    from lawsearch.study import build_search
    from lawsearch.train._replay import ReplayTrainer

    data = _base(tmp_path)
    trainer = ReplayTrainer({0: ([1, 2], [3.0, 2.5])})
    assert build_search(_parse(tmp_path, data), trainer=trainer).rank == "law"
    data.setdefault("search", {})["rank"] = "loss"
    assert build_search(_parse(tmp_path, data), trainer=trainer).rank == "loss"

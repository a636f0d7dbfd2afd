"""The bad-input matrix: each case runs the real CLI in a subprocess and must exit 2 cleanly.

Every case asserts: exit code 2, a message that names the field and says the fix
(``snippet`` below, which the README's "Bad inputs" table quotes), no traceback,
and the work folder (study file, data, an existing run folder and its journal)
byte for byte as it was. ``test_readme_table_lists_every_case`` keeps the README
table and ``CASES`` the same list.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

#: a tiny three-domain study on JSONL files, valid as written
BASE = {
    "study": 'name = "tiny"\nseed = 3',
    "domains.a": 'paths = ["a.jsonl"]',
    "domains.b": 'paths = ["b.jsonl"]',
    "domains.c": 'paths = ["c.jsonl"]',
    "search_space": 'schedules = ["cosine"]\npeak_lr = [1e-3, 1e-2]',
    "budgets": "short_tokens = 2560\nfull_tokens = 12800",  # 40 and 200 steps
    "law": 'name = "power"',
    "pruner": "quantile = 0.2",
    "search": "candidates = 6\nsurvivors = 2",
    "train": 'batch_size = 4\nseq_len = 16\neval_every = 5\ndevice = "cpu"\ncheckpoint_every = 0',
}
WORDS = "the of and to in a is that for it as was with be by on not this are or from at".split()


def write_data(work: Path) -> None:
    for k, name in enumerate("abc"):
        lines = [
            json.dumps(
                {"text": " ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for j in range(30))}
            )
            for i in range(40)
        ]
        (work / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def write_study(work: Path, **changes: str) -> Path:
    sections = {**BASE, **changes}
    path = work / "tiny.toml"
    path.write_text("\n".join(f"[{k}]\n{v}\n" for k, v in sections.items()))
    return path


def write_csv(work: Path, text: str) -> Path:
    path = work / "curves.csv"
    path.write_text(text)
    return path


def run_cli(work: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAWSEARCH_CACHE": str(work.parent / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "lawsearch", *argv],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> a hash of its bytes (folders as ``dir``)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---- an existing study for the resume cases -------------------------------------------


def stored_study(work: Path, *, checkpoint: bytes | None = None, model: dict | None = None) -> None:
    """Run one screening trial's bookkeeping into the journal (no training), and optionally
    queue a continuation that resumes from a checkpoint file written here."""
    import optuna

    from lawsearch.config import load_study
    from lawsearch.optuna import _attrs
    from lawsearch.study import open_study_storage, suggest_config

    cfg = load_study(work / "tiny.toml", run_root=work)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=cfg.name, storage=open_study_storage(cfg))
    trial = study.ask()
    suggest_config(cfg, trial)
    study.tell(trial, 3.0)
    if model is None and checkpoint is None:
        return
    import torch

    path = cfg.checkpoint_dir / "run0" / "step-00000040.pt"
    path.parent.mkdir(parents=True)
    from dataclasses import asdict

    from lawsearch.study import build_trainer

    spec = {**asdict(build_trainer(cfg).model_spec), **(model or {})}  # the study's, changed
    payload = {"format": "lawsearch-checkpoint/1", "model_spec": spec, "data_key": ""}
    torch.save(payload, path)
    if checkpoint is not None:  # truncated: the first bytes of a real checkpoint
        path.write_bytes(path.read_bytes()[: len(checkpoint)])
    done = study.get_trials(deepcopy=False)[0]
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=done.params,
            distributions=done.distributions,
            user_attrs={_attrs.PARENT: 0, _attrs.RESUME_STEP: 40, _attrs.CHECKPOINT: str(path)},
        )
    )


# ---- the cases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    what: str  # the README's "case" column
    snippet: str  # a literal part of the message (the README's "message" column)
    setup: Callable[[Path], list[str]]  # writes the inputs into the work folder, returns argv
    marks: tuple[str, ...] = ()


def study_case(command: str = "run", **changes: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        return [command, str(write_study(work, **changes).name)]

    return setup


def raw_study(text_change: Callable[[str], str]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        path = write_study(work)
        path.write_text(text_change(path.read_text()))
        return ["run", path.name]

    return setup


def empty_domain(work: Path) -> list[str]:
    (work / "empty.jsonl").write_text("")
    return ["run", write_study(work, **{"domains.c": 'paths = ["empty.jsonl"]'}).name]


def fit_case(text: str, *extra: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        return ["fit", write_csv(work, text).name, *extra]

    return setup


def other_space(work: Path) -> list[str]:
    write_study(work)
    stored_study(work)
    return [
        "run",
        write_study(work, search_space='schedules = ["cosine"]\npeak_lr = [1e-4, 1e-2]').name,
    ]


def unwritable_dir(work: Path) -> list[str]:
    (work / "blocker").write_text("a file where the run folder's parent should be\n")
    return ["run", write_study(work, study='name = "tiny"\ndir = "blocker/run"').name]


def truncated_checkpoint(work: Path) -> list[str]:
    write_study(work)
    stored_study(work, checkpoint=b"x" * 200)
    return ["run", "tiny.toml"]


def foreign_checkpoint(work: Path) -> list[str]:
    write_study(work)
    stored_study(work, model={"d_model": 32})
    return ["run", "tiny.toml"]


def postgres_case(url: str) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        return ["run", write_study(work, study=f'name = "tiny"\nstorage = "{url}"').name]

    return setup


CASES = [
    Case(
        "malformed-toml",
        "study file that is not TOML",
        "not valid TOML: Invalid initial character for a key part (at line 4, column 2); fix",
        raw_study(lambda t: t.replace("seed = 3", "seed = 3\n[")),
    ),
    Case(
        "unknown-key",
        "misspelt key",
        "`study.sed` is not a known key of [study]; did you mean 'seed'?",
        raw_study(lambda t: t.replace("seed = 3", "sed = 3")),
    ),
    Case(
        "wrong-type",
        "value of the wrong type",
        "`study.seed` must be an integer; got 'three'",
        raw_study(lambda t: t.replace("seed = 3", 'seed = "three"')),
    ),
    Case(
        "reconnect-timeout",
        "zero reconnect timeout (how long a worker waits for a restarting database)",
        "`study.reconnect_timeout` must be > 0 seconds; got 0.0",
        raw_study(lambda t: t.replace("seed = 3", "seed = 3\nreconnect_timeout = 0")),
    ),
    Case(
        "mixture-bounds",
        "mixture bounds that cannot sum to 1",
        "`domains.*.high`: the upper bounds sum to 0.6 < 1, so no mixture can meet them; raise",
        study_case(
            **{f"domains.{d}": f'paths = ["{d}.jsonl"]\nhigh = 0.2' for d in "abc"},
        ),
    ),
    Case(
        "empty-domain",
        "domain with no text",
        "`domains.c` has no text: its source holds no non-empty document; add documents",
        empty_domain,
        ("torch",),
    ),
    Case(
        "missing-path",
        "domain path that does not exist",
        "`domains.c.paths[0]` = 'nope.jsonl': no such file or folder",
        study_case(**{"domains.c": 'paths = ["nope.jsonl"]'}),
    ),
    Case(
        "zero-lr",
        "zero learning rate",
        "`search_space.peak_lr` must be > 0 (it is searched on a log scale); got [0.0, 0.0]",
        study_case(search_space='schedules = ["cosine"]\npeak_lr = 0'),
    ),
    Case(
        "negative-lr",
        "negative learning rate",
        "`search_space.peak_lr` must be > 0 (it is searched on a log scale); got [-0.001, 0.01]",
        study_case(search_space='schedules = ["cosine"]\npeak_lr = [-1e-3, 1e-2]'),
    ),
    Case(
        "short-budget",
        "short budget with fewer evaluations than the law needs",
        "the 'power' law needs at least 5 points to fit; raise `budgets.short_tokens` to >= 3,200",
        study_case(train='batch_size = 4\nseq_len = 16\neval_every = 10\ndevice = "cpu"'),
    ),
    Case(
        "corpus-repetition",
        "budget larger than the corpus allows without repetition",
        "`search_space.max_epochs` = 1: the domains can supply at most",
        study_case(
            search_space='schedules = ["cosine"]\npeak_lr = [1e-3, 1e-2]\nmax_epochs = 1',
            budgets="short_tokens = 2560\nfull_tokens = 12800000",
        ),
        ("torch",),
    ),
    Case(
        "unknown-law",
        "unknown law name",
        "`law.name` = 'powr' is not a known law; choose one of",
        study_case(law='name = "powr"'),
    ),
    Case(
        "pruner-name",
        "a pruner name (lawsearch has one pruner)",
        "`pruner.name` is not a setting: lawsearch always stops candidates with its LawPruner",
        study_case(pruner='name = "median"'),
    ),
    Case(
        "sampler-name",
        "a sampler name (lawsearch has one sampler)",
        "`sampler` is not a setting: lawsearch always proposes with its LawSampler",
        study_case(sampler='name = "tpe"'),
    ),
    Case(
        "fit-missing-column",
        "`fit` CSV without a required column",
        "curves.csv: missing column(s) 'lr'; the CSV needs the header run_id,step,lr,loss",
        fit_case("run_id,step,loss\nr,1,3.0\n"),
    ),
    Case(
        "fit-duplicate-step",
        "`fit` CSV with a step twice",
        "`step` must increase; curves.csv line 3 has step 1 after step 1 on line 2. Sort",
        fit_case("run_id,step,lr,loss\nr,1,0.1,3.0\nr,1,0.1,2.9\nr,2,0.1,2.8\n"),
    ),
    Case(
        "fit-non-numeric",
        "`fit` CSV with a word for a number",
        "curves.csv line 3: `loss` must be a number; got 'abc'; write a number",
        fit_case("run_id,step,lr,loss\nr,1,0.1,3.0\nr,2,0.1,abc\nr,3,0.1,2.8\n"),
    ),
    Case(
        "fit-one-point",
        "`fit` CSV with one run of one point",
        "the observed prefix has 1 points but law 'power' needs at least",
        fit_case("run_id,step,lr,loss\nr,1,0.1,3.0\n", "--law", "power"),
    ),
    Case(
        "sqlite-storage",
        "SQLite storage (cannot host parallel workers)",
        "SQLite cannot host parallel workers",
        study_case(study='name = "tiny"\nstorage = "sqlite:///tiny.db"'),
    ),
    Case(
        "unreachable-storage",
        "unreachable storage URL",
        "Check that the database server runs and the URL is right",
        postgres_case("postgresql://postgres@127.0.0.1:1/none"),
    ),
    Case(
        "postgres-role",
        "PostgreSQL user that is not a role",
        "The user in the URL is not a role of that server: fix the user name",
        postgres_case("postgresql://i_badinput_nobody@127.0.0.1:5432/test"),
        ("postgres",),
    ),
    Case(
        "postgres-database",
        "PostgreSQL database that does not exist",
        "The database in the URL does not exist on that server: fix its name",
        postgres_case("postgresql://postgres@127.0.0.1:5432/i_badinput_no_such_db"),
        ("postgres",),
    ),
    Case(
        "other-search-space",
        "study name stored with another search space",
        "give the new search space a new `study.name` (the old study stays as it is)",
        other_space,
        ("torch",),
    ),
    Case(
        "unwritable-run-dir",
        "run folder that cannot be written",
        "is a file, not a folder; point `study.dir` elsewhere",
        unwritable_dir,
        ("torch",),
    ),
    Case(
        "truncated-checkpoint",
        "truncated checkpoint a resume would read",
        "is truncated or corrupted (PytorchStreamReader failed reading zip archive",
        truncated_checkpoint,
        ("torch",),
    ),
    Case(
        "foreign-checkpoint",
        "checkpoint of another model config",
        "was written with another model_spec (d_model: 32 there, 64 now)",
        foreign_checkpoint,
        ("torch",),
    ),
]


def _params() -> list[object]:
    marks = {"torch": pytest.mark.torch, "postgres": pytest.mark.postgres}
    return [
        pytest.param(c, id=c.id, marks=[marks[m] for m in c.marks] + [pytest.mark.slow])
        for c in CASES
    ]


@pytest.mark.parametrize("case", _params())
def test_bad_input_exits_2_with_the_fix_and_writes_nothing(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "postgres" in case.marks:
        request.getfixturevalue("postgres_url")
    if "torch" in case.marks:
        pytest.importorskip("torch")
    work = tmp_path / "work"
    work.mkdir()
    write_data(work)
    argv = case.setup(work)
    before = snapshot(work)
    proc = run_cli(work, *argv)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"lawsearch {argv[0]}: error: "), proc.stderr
    assert case.snippet in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert snapshot(work) == before  # nothing written, nothing already there changed


def readme_rows() -> list[tuple[str, str, str]]:
    """``(id, case, message)`` of each row of the README's "Bad inputs" table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Bad inputs", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\| `([\w-]+)` \| (.+?) \| (.+) \| 2 \|$", line)
        if m:
            rows.append((m[1], m[2], m[3]))
    return rows


def readme_table() -> str:
    """The README table as ``CASES`` gives it (print it to update the README)."""
    lines = ["| id | case | message (part) | exit |", "|---|---|---|---|"]
    for c in CASES:
        lines.append(f"| `{c.id}` | {c.what} | {c.snippet} | 2 |")
    return "\n".join(lines)


def test_readme_table_lists_every_case() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)
    assert readme_rows() == [(c.id, c.what, c.snippet) for c in CASES], (
        "update README.md's 'Bad inputs' table to:\n" + readme_table()
    )

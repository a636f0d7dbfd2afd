import subprocess
import sys
from pathlib import Path

import pytest

import lawsearch


def test_every_public_name_resolves() -> None:
    for name in lawsearch.__all__:
        assert getattr(lawsearch, name) is not None, name


def test_import_is_light() -> None:
    code = (
        "import sys, lawsearch, lawsearch.laws, lawsearch.schedules;"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'matplotlib', 'plotly')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_names_are_public_and_typed() -> None:
    """Every lazily loaded name is in ``__all__`` and imported under TYPE_CHECKING."""
    import ast

    source = Path(lawsearch.__file__).read_text(encoding="utf-8")
    typed: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom):
                    typed |= {a.asname or a.name for a in imp.names}
    lazy = set(lawsearch._LAZY)
    assert lazy <= set(lawsearch.__all__)
    assert lazy == typed, f"lazy but untyped: {lazy - typed}; typed but not lazy: {typed - lazy}"


@pytest.mark.slow
def test_type_checkers_see_the_real_types(tmp_path: Path) -> None:
    """mypy resolves the lazily exported names to their classes, not to ``Any``."""
    from mypy import api

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import lawsearch\n"
        "reveal_type(lawsearch.LawPruner)\n"
        "reveal_type(lawsearch.TransformersTrainer)\n"
        "reveal_type(lawsearch.fit_transfer)\n"
    )
    out, err, _ = api.run([str(probe), "--follow-imports=silent", "--no-incremental"])
    revealed = [line for line in out.splitlines() if "Revealed type" in line]
    assert len(revealed) == 3, out + err
    assert not any('"Any"' in line for line in revealed), out
    assert "LawPruner" in revealed[0] and "TransformersTrainer" in revealed[1], out

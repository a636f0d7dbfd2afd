import subprocess
import sys

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

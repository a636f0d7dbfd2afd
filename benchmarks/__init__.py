"""lawsearch's benchmarks: each module measures one claim, prints a table and writes JSON.

Run one as a module from the repository root: ``python -m benchmarks.<name> [--tiny]``.
"""

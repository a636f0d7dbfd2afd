"""``RetrievalRerank``: retrieve → short training → extrapolate → keep top k → continue → rerank.

* ``_rerank``: the workers' loop, claiming and promoting trials, the final rerank;
* ``_extrapolate``: how a finished trial is ranked (the law's extrapolation, its
  checks, the rung's joint refit);
* ``_result``: ``SearchResult`` and the finished trials the rules see.
"""

from lawsearch.search._extrapolate import RungExtrapolator
from lawsearch.search._rerank import RetrievalRerank, sync_keep
from lawsearch.search._result import SearchResult

__all__ = ["RetrievalRerank", "RungExtrapolator", "SearchResult", "sync_keep"]

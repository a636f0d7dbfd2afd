"""Law-proposed schedules: extra candidates (once per study) that train the law's own schedule.

After the screen (every candidate has finished the short budget) and, under
``sync`` promotion, before the first cut (the pending proposal holds the rung
open; under ``async`` some candidates may have continued already),
``ScheduleProposer`` reads the rung's joint refit (the cached pooled fit of the
screened curves that the cut ranks by), takes the ``count`` best screened trials
with a usable schedule-aware fit and, for each, asks
``lawsearch.schedule_opt.optimise_schedule`` for the piecewise LR schedule whose
final loss that trial's fit predicts lowest: the same mixture, the same peak LR
and warmup, the study's final LR, a monotone decay. A proposal the law predicts
to end lower than every hand family at that peak (and than the trial's own
schedule) becomes an extra rung-0 candidate: a WAITING trial with the source's
parameters and ``lawsearch:proposed_schedule`` (the schedule it trains; its
continuations and retries inherit it), ``lawsearch:proposed_final`` (the law's
prediction) and ``lawsearch:proposed_from``. It then screens, is extrapolated and
is cut like any candidate, so it only reaches the full budget if it ranks there.

The peak LR is the source trial's (inside the study's range by construction),
not optimised: a law fitted on short curves credits a higher peak with more
intrinsic time and does not see the instability that bounds it, so it would
always pick the top of the range.

The decision is made once per study and stored as the study attr
``lawsearch:schedule_proposal`` (what was proposed, or why nothing was: the fit
failed, the law ignores the schedule, no proposal predicted lower than the hand
families, ...). A re-run, a resumed study or a second worker reads it and never
proposes again; two workers that decide at the same moment add the same
proposal twice and the claim rule (``_faults.claim_is_unique``) trains the first.
Nothing here removes or ranks a trial: a failed fit proposes nothing and the cut
goes on as without a proposer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from lawsearch.optuna import _attrs
from lawsearch.optuna._mixture import get_schedule, set_schedule
from lawsearch.schedule_opt import ScheduleProposal, optimise_schedule, predict_final
from lawsearch.schedules import Schedule

__all__ = ["MIN_GAIN", "ScheduleProposer", "apply_proposal", "proposal_decision"]

#: the least relative improvement over the best hand schedule worth a proposal (the law's
#: optimiser starts from the hand shapes, so a gain below this is a hand shape again)
MIN_GAIN = 1e-3
#: families whose ``final_lr`` is their last LR (the others have no final LR to keep)
_WITH_FINAL = ("linear", "cosine", "wsd", "piecewise")


class ScheduleProposer:
    """Propose up to ``count`` law-optimised schedules once the screen has finished.

    Args:
        count: how many of the best screened trials get a proposal (>= 1).
        final_lr_ratio: the final LR as a fraction of the peak (the study's
            ``search_space.final_lr_ratio``); None: the source schedule's own
            ``final_lr`` (families without one get no proposal).
        knots: LR multipliers of the piecewise schedule (``optimise_schedule``).
        min_gain: the least relative improvement over the best hand schedule's
            prediction that makes a proposal (``MIN_GAIN``).
    """

    def __init__(
        self,
        count: int,
        *,
        final_lr_ratio: float | None = None,
        knots: int = 12,
        min_gain: float = MIN_GAIN,
    ) -> None:
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise ValueError(f"`count` must be an integer >= 1; got {count!r}.")
        if final_lr_ratio is not None and not 0 <= final_lr_ratio <= 1:
            raise ValueError(
                f"`final_lr_ratio` must be in [0, 1] (or None); got {final_lr_ratio!r}."
            )
        self.count = int(count)
        self.final_lr_ratio = final_lr_ratio
        self.knots = int(knots)
        if not 0 <= min_gain < 1:
            raise ValueError(f"`min_gain` must be in [0, 1); got {min_gain!r}.")
        self.min_gain = float(min_gain)

    def propose(self, search: Any, study: optuna.Study) -> bool:
        """Make the study's decision if the screen has just finished; True if a trial was added.

        Args:
            search: the ``RetrievalRerank`` (its budgets, extrapolator and rung rule).
            study: the study.
        """
        trials = study.get_trials(deepcopy=False)
        if proposal_decision(study) is not None or any(
            _attrs.PROPOSED_FROM in t.user_attrs for t in trials
        ):
            return False  # decided before (this process, another worker or a previous run)
        if len(search.budgets) < 2 or not search._rung_finished(trials, 0):
            return False
        made, decision = self._decide(search, study, trials)
        for spec in made:  # the trials first: a crash before the attr still leaves them seen
            study.add_trial(spec)
        _write(study, decision)
        return bool(made)

    def _decide(
        self, search: Any, study: optuna.Study, trials: list[FrozenTrial]
    ) -> tuple[list[FrozenTrial], dict[str, Any]]:
        law = search.extrapolator.law
        if study.direction == StudyDirection.MAXIMIZE:
            return [], _nothing(
                "the study maximises its objective; a law-proposed schedule "
                "minimises the predicted loss"
            )
        if not law.uses_lr:
            return [], _nothing(
                f"the law {law.name!r} ignores the LR schedule; set a schedule-aware law "
                "(e.g. law.name = 'multipower' or 'momentum') to propose schedules"
            )
        nodes, _ = search._nodes(study, trials)
        at = [n for n in nodes if n.rung == 0]
        budget = int(search.budgets[0])
        joint = search.extrapolator.joint_refit(study, 0, budget, at, trials)
        usable = [
            n
            for n in at
            if n.number in joint.scores
            and (fit := joint.fits.get(n.number)) is not None
            and fit.ok
            and fit.law.uses_lr
        ]
        if not usable:
            whys = sorted({joint.why.get(n.number, "its fit is not schedule-aware") for n in at})
            return [], _nothing(
                "no screened trial has a usable schedule-aware joint fit ("
                + "; ".join(whys[:3])
                + ")"
            )
        usable.sort(key=lambda n: (joint.scores[n.number][1], n.number))  # optimistic end
        by_number = {t.number: t for t in trials}
        made: list[FrozenTrial] = []
        entries: list[dict[str, Any]] = []
        for node in usable[: self.count]:
            source = by_number[node.number]
            entry, spec = self._one(source, joint.fits[node.number])
            entries.append(entry)
            if spec is not None:
                made.append(spec)
        decision: dict[str, Any] = {
            "proposed": len(made),
            "law": law.name,
            "rung": 0,
            "budget": budget,
            "candidates": entries,
        }
        if not made:
            decision["why"] = "nothing proposed: " + "; ".join(e["why"] for e in entries)
        return made, decision

    def _one(self, source: FrozenTrial, fit: Any) -> tuple[dict[str, Any], FrozenTrial | None]:
        """One source trial's proposal record, and the WAITING trial (None: not proposed)."""
        entry: dict[str, Any] = {"from": source.number}
        try:
            own = get_schedule(source.user_attrs)
        except (ValueError, TypeError) as exc:
            own = None
            entry["why"] = f"trial {source.number}: bad {_attrs.SCHEDULE}: {exc}"
        if own is None:
            entry.setdefault("why", f"trial {source.number} stores no {_attrs.SCHEDULE}")
            return entry, None
        if self.final_lr_ratio is not None:
            final = own.peak_lr * self.final_lr_ratio
        elif own.family in _WITH_FINAL:
            final = own.final_lr
        else:
            entry["why"] = (
                f"trial {source.number}'s {own.family!r} schedule has no final LR; give "
                "final_lr_ratio"
            )
            return entry, None
        try:
            prop = optimise_schedule(
                fit,
                total_steps=own.total_steps,
                peak_lr=own.peak_lr,
                final_lr=final,
                warmup=own.warmup_steps,
                knots=self.knots,
            )
            own_pred = predict_final(fit, own)
        except (ValueError, FloatingPointError, RuntimeError) as exc:
            entry["why"] = f"trial {source.number}: the optimiser failed: {exc}"
            return entry, None
        hand, best = _best_hand(prop, own.family, own_pred)
        entry.update(
            predicted_final=_attrs.plain(prop.predicted_final),
            best_hand=hand,
            best_hand_predicted=_attrs.plain(best),
            own_predicted=_attrs.plain(own_pred),
        )
        if not (math.isfinite(prop.predicted_final) and math.isfinite(best)):
            entry["why"] = f"trial {source.number}: the law's predictions are not finite"
            return entry, None
        if prop.predicted_final >= best * (1.0 - self.min_gain):
            entry["why"] = (
                f"trial {source.number}: the proposal is predicted at "
                f"{prop.predicted_final:.5g}, not {100 * self.min_gain:g}% below the best hand "
                f"schedule ({hand}: {best:.5g})"
            )
            return entry, None
        return entry, _waiting_trial(source, prop)


def _best_hand(prop: ScheduleProposal, family: str, own_pred: float) -> tuple[str, float]:
    """The lowest prediction among the hand families at this peak and the trial's own schedule."""
    name, value = prop.best_baseline
    if math.isfinite(own_pred) and own_pred < value:
        return f"own ({family})", own_pred
    return name, value


def _waiting_trial(source: FrozenTrial, prop: ScheduleProposal) -> FrozenTrial:
    """The extra candidate: the source's parameters, the proposed schedule in its attrs."""
    spec = json.loads(json.dumps(prop.schedule.to_dict()))
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=dict(source.params),
        distributions=dict(source.distributions),
        user_attrs={
            _attrs.PROPOSED_SCHEDULE: spec,
            _attrs.SCHEDULE: spec,
            _attrs.PROPOSED_FINAL: _attrs.plain(prop.predicted_final),
            _attrs.PROPOSED_FROM: int(source.number),
            _attrs.RUNG: 0,
        },
    )


def _nothing(why: str) -> dict[str, Any]:
    return {"proposed": 0, "why": f"nothing proposed: {why}", "candidates": []}


def _write(study: optuna.Study, decision: Mapping[str, Any]) -> None:
    study.set_user_attr(_attrs.PROPOSAL, json.loads(json.dumps(dict(decision))))


def proposal_decision(study: optuna.Study) -> dict[str, Any] | None:
    """The study's schedule-proposal decision (None: not made yet)."""
    value = study.user_attrs.get(_attrs.PROPOSAL)
    return dict(value) if isinstance(value, Mapping) else None


def apply_proposal(trial: Trial, config: Mapping[str, Any]) -> Mapping[str, Any]:
    """``config`` with the trial's proposed schedule, if it has one (else ``config`` itself).

    Called after the trial's parameters were suggested (``suggest_schedule`` stored
    the source's hand schedule in ``lawsearch:schedule``): the proposed schedule
    replaces it there too, so the law extrapolates with what was trained.
    """
    spec = trial.user_attrs.get(_attrs.PROPOSED_SCHEDULE)
    if spec is None:
        return config
    schedule = Schedule.from_dict(json.loads(spec) if isinstance(spec, str) else spec)
    set_schedule(trial, schedule)
    return {**config, "schedule": schedule.to_dict()}

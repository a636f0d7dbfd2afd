"""The law-proposed-schedule benchmark trains, fits, proposes and compares on a tiny study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import schedule_opt
from lawsearch.schedules import Schedule


@pytest.mark.slow
def test_tiny_run_trains_the_proposals_on_held_out_seeds(tmp_path: Path, capsys) -> None:
    assert schedule_opt.main(["--tiny", "--jobs", "1", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "schedule_opt.json").read_text())
    rows = payload["rows"]
    peaks = payload["peaks"]
    # one row per law variant and peak
    assert {(r["variant"], r["peak_lr"]) for r in rows} == {
        (v, p) for v in schedule_opt.VARIANTS for p in peaks
    }
    assert len(payload["seed0_hand_finals"]) == len(schedule_opt.HANDS) * len(peaks)
    for r in rows:
        s = Schedule.from_dict(r["schedule"])
        assert s.family == "piecewise" and s.peak_lr == r["peak_lr"]
        lr = s.per_step()[s.warmup_steps :]
        assert lr.max() <= r["peak_lr"] * (1 + 1e-12)
        assert lr.min() >= r["peak_lr"] * schedule_opt.FINAL_LR_RATIO * (1 - 1e-9)
        assert (np.diff(lr) <= 1e-15).all()
        # the best hand family is the seed-0 winner at that peak (in-sample pick)
        at_peak = {
            k.split("@")[0]: v
            for k, v in payload["seed0_hand_finals"].items()
            if float(k.split("@")[1]) == r["peak_lr"]
        }
        assert r["best_hand"] == min(at_peak, key=lambda k: at_peak[k])
        assert r["best_hand_final_seed0"] == at_peak[r["best_hand"]]
        # the comparison is on the held-out seeds only, seed by seed
        assert r["held_out_seeds"] == [1, 2]
        assert len(r["proposal_finals"]) == len(r["best_hand_finals"]) == 2
        assert r["diffs"] == pytest.approx(
            [p - h for p, h in zip(r["proposal_finals"], r["best_hand_finals"], strict=True)]
        )
        lo, hi = r["diff_ci95"]
        assert lo <= r["mean_diff"] <= hi
        tie = schedule_opt.TIE
        assert r["verdict"] == (
            "tie"
            if -tie <= lo and hi <= tie
            else "beats"
            if hi < 0 and r["mean_diff"] < -tie
            else "loses"
            if lo > 0 and r["mean_diff"] > tie
            else "not resolved"
        )
        assert r["best_hand_seed_sd"] > 0
        # the law's error on each hand schedule left out of its fit (seed 0 only)
        if r["variant"] == schedule_opt.ITERATED:
            # its fit saw the hand runs and the earlier rounds' proposals (seed 0)
            assert set(at_peak) <= set(r["loo_errors"])
            rounds = r["round_finals"]
            assert 1 <= len(rounds) <= schedule_opt.ROUNDS
            # the held-out proposal is the round with the lowest seed-0 final
            assert f"round {r['from_round']}" == min(rounds, key=lambda k: rounds[k])
        else:
            assert set(r["loo_errors"]) == set(at_peak)
        rms = np.sqrt(np.mean(np.square(list(r["loo_errors"].values()))))
        assert r["loo_rms"] == pytest.approx(rms) and np.isfinite(rms)
        if r["variant"] == schedule_opt.HULL:
            # a convex combination of the hand schedules the fit saw at that peak
            assert set(r["weights"]) == set(at_peak)
            assert sum(r["weights"].values()) == pytest.approx(1.0)
            hands = {
                label: Schedule.from_dict(
                    schedule_opt._schedule(family, decay, r["peak_lr"], s.total_steps)
                ).per_step()
                for label, (family, decay) in schedule_opt.HANDS.items()
            }
            mixed = sum(w * hands[label] for label, w in r["weights"].items())
            np.testing.assert_allclose(s.per_step(), mixed, rtol=5e-3)
        else:
            assert r["weights"] == {}
    assert (tmp_path / "schedule_opt.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "schedule_opt.md").read_text().startswith("| law fit (seed 0) |")
    assert "| law fit (seed 0) |" in capsys.readouterr().out


def test_a_changed_proposal_gets_a_new_run_id() -> None:
    """Finished runs are cached by id: a proposal's id must change with its schedule."""

    def proposal(knots: tuple[float, ...]) -> schedule_opt.Proposal:
        sched = Schedule(
            "piecewise", 3e-3, 240, warmup_steps=5, final_lr=3e-4, knots=knots
        ).to_dict()
        return schedule_opt.Proposal("per peak", 3e-3, "wsd30", sched, 3.6, 3.6)

    a, b = proposal((1.0, 0.5, 0.1)), proposal((1.0, 0.6, 0.1))
    assert schedule_opt.proposal_run_id(a, 1) == schedule_opt.proposal_run_id(
        proposal((1.0, 0.5, 0.1)), 1
    )
    assert schedule_opt.proposal_run_id(a, 1) != schedule_opt.proposal_run_id(b, 1)
    assert schedule_opt.proposal_run_id(a, 1) != schedule_opt.proposal_run_id(a, 2)

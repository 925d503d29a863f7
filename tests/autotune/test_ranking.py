"""Ranking records: configs the model check judged (in_model) against those it never ran, and
the best records of a node's implementations compared like with like."""
from dataclasses import replace

import autotune
from autotune import record as rec

from .test_record import W, cfg, make

T0, T1, T2 = 1_000.0, 2_000.0, 3_000.0          # tuned, judged in the model, tuned again


def checked(i: int, vs: float, t: float = T0, **kw) -> rec.Record:
    """Config i of W as a tuner's final check timed it (vs: its speed-up over the default there)."""
    return replace(make(config=cfg(i), costs=kw.pop("costs", (1e-3,))), checked=True, vs_default=vs, timestamp=t, **kw)


def judged(i: int, vs: float, t: float = T1, costs=(2e-3,)) -> rec.Record:
    """Config i of W as the model check timed it beside the untuned kernel."""
    return checked(i, vs, t, costs=costs, in_model=True)


def best_config(records) -> dict:
    return rec.best(records)[W].config


TUNED = [checked(0, 1.0), checked(1, 2.0), checked(2, 1.5)]        # the default (0) and two the tuner ranked above it


def test_a_config_the_model_never_ran_ranks_below_the_judged_ones():
    """The tuner's runner-up (2, 1.5x alone) does not replace a config the model judged faster
    than the default (1, 1.3x there): the next build would run a config the model has not timed."""
    assert best_config(TUNED) == cfg(1)
    assert best_config([*TUNED, judged(1, 1.3)]) == cfg(1)
    assert best_config([*TUNED, judged(1, 1.3), judged(0, 1.0)]) == cfg(1)


def test_a_config_slower_in_the_model_never_wins_over_the_default():
    """Config 1 ran slower in the model: the default wins, whether the model timed it (an in_model
    record of 1.0) or only the tuner's check did, and the runner-up the model never ran stays below."""
    for default in (judged(0, 1.0), checked(0, 1.0)):
        assert best_config([*TUNED[1:], judged(1, 0.8), default]) == cfg(0)
    slower = judged(1, 0.8)
    assert rec.slower_in_model(slower) and not rec.slower_in_model(judged(1, 0.99))     # a tie is no verdict
    ranked = sorted(rec.pooled([*TUNED[1:], slower]), key=lambda r: rec.rank_key(r, T1))
    assert [r.config for r in ranked] == [cfg(1), cfg(2)] and all(rec.rank_key(r, T1)[0] for r in ranked)


def test_a_record_newer_than_the_judging_ranks_as_before():
    """A tune after the check: its record has not been in the model yet, and ranks by the tuner's
    check as it would without the judging (the next check judges it)."""
    again = checked(2, 1.5, T2)
    assert best_config([*TUNED, judged(1, 1.3), again]) == cfg(2)
    assert rec.judging_times([*TUNED, judged(1, 1.3), again]) == {(W, again.isa): T1}


def test_logs_without_model_records_rank_as_before():
    for r in rec.pooled(TUNED):
        assert rec.rank_key(r) == rec.rank_key(r, None) and not rec.rank_key(r)[0]
    assert [r.config for r in sorted(rec.pooled(TUNED), key=rec.rank_key)] == [cfg(1), cfg(2), cfg(0)]


def test_a_merged_log_keeps_the_verdict():
    """Merged to its best record per workload, a log whose judged config lost keeps that record
    (not the unjudged runner-up), so a build with the merged log goes back to the default too."""
    (kept,) = rec.merged([TUNED[1], TUNED[2], judged(1, 0.8)])
    assert kept.config == cfg(1) and kept.in_model


def test_dispatch_takes_the_default_over_records_below_it():
    task = autotune.create_task("matmul", [8, 8, 8, "float32"])
    isa = task.target.isa
    on_host = [replace(r, isa=isa) for r in (TUNED[2], judged(1, 0.8))]
    history = autotune.apply_history_best(on_host)
    assert history.query(task) is None and history.judged_at(task) == T1
    assert autotune.apply_history_best(on_host[:1]).query(task).to_json() == cfg(2)


def test_implementations_judged_in_the_model_compare_by_their_speed_up_there():
    """preferred: the best records of a node's implementations (here all of W, as the ranking is
    by record alone).  Both judged: the higher speed-up over the untuned kernel wins, not the
    lower cost (two builds' timings); a record the model never ran, older than the node's
    judging, loses to the judged one; one newer competes by cost, as before any check."""
    fast_there, cheap = judged(1, 1.2, costs=(3e-3,)), judged(2, 1.1, costs=(2e-3,))
    assert rec.preferred([("a", fast_there), ("b", cheap)], T1)[0] == "a"
    assert rec.preferred([("a", cheap), ("b", fast_there)], T1)[0] == "b"
    alone = checked(2, 1.5, T0, costs=(1e-3,))
    assert rec.preferred([("a", fast_there), ("b", alone)], T1)[0] == "a"
    assert rec.preferred([("a", fast_there), ("b", replace(alone, timestamp=T2))], T1)[0] == "b"
    assert rec.preferred([("a", fast_there), ("b", alone)])[0] == "b"         # no judging: by cost
    assert rec.preferred([("a", judged(1, 0.8)), ("b", alone)], T1) is None    # the default

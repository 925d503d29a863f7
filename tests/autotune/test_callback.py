"""Tuning callbacks: the progress bar shows the best the log holds, a measured throughput."""
import io
import re

import autotune
from autotune import record as rec


class _SwingingDefault:
    """A scripted measurer whose default config runs 4x slower in the first search batch than in
    the next ones, while the candidates run alike in every batch: the default's time beside them
    (the anchor, vs_default) is no yardstick of the machine's speed there, as a conv's default
    schedule was not in an auto-scheduler run (4.4 to 21 ms beside candidates of 0.6 to 0.8)."""

    def __init__(self):
        self.batches = 0

    def measure(self, task, configs, rounds=1, best_cost=None):
        self.batches += 1
        d = task.config_space.default_index()
        anchor = 20e-6 if self.batches == 1 else 5e-6
        out = []
        for _ in range(rounds):
            for c in configs:
                cost = anchor if c.index == d else 2e-6 + 1e-8 * (c.index % 50)
                # a search batch carries the anchor; the final check's rounds hold the default themselves
                out.append(rec.Record(task.workload_key, c.to_json(), [cost], isa=task.target.isa,
                                      vs_default=anchor / cost if rounds == 1 else 0.0))
        return out


def test_the_progress_bar_shows_the_best_of_the_log(tmp_path):
    """After every batch, the final check's included, the bar's best GFLOP/s is the log's best
    record's, never faster than any timing taken."""
    task = autotune.create_task("matmul", (64, 64, 64, "float32"))
    path = tmp_path / "log.jsonl"
    out = io.StringIO()
    seen = []

    def compare(tuner, indices, records):
        shown = float(re.search(r"best +([\d.]+) GFLOP/s", out.getvalue().splitlines()[-1]).group(1))
        logged = rec.best(rec.load(path))[task.workload_key]
        seen.append((shown, round(task.flops / logged.cost / 1e9, 1)))

    tuner = autotune.RandomTuner(task)
    tuner.tune(16, measurer=_SwingingDefault(),
               callbacks=[autotune.log_to_file(path), autotune.progress_bar(stream=out), compare])
    assert len(seen) >= 3                              # two search batches and a final check
    assert all(shown == logged for shown, logged in seen), seen
    assert max(shown for shown, _ in seen) <= task.flops / 2e-6 / 1e9
    final = rec.best(rec.load(path))[task.workload_key]
    assert final.checked and tuner.best_record.config == final.config
    assert tuner.best_flops == task.flops / final.cost

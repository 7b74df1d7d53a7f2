"""Auto-compaction decides like etcd 3.5's periodic and revision compactors."""

from etcdpy.server.compactor import PeriodicCompactor, RevisionCompactor


def test_periodic_waits_a_whole_period_then_compacts_what_it_saw_then() -> None:
    c = PeriodicCompactor(period_s=10.0, now=0.0)
    assert c.sample_interval_s == 1.0
    rev = 100
    decided = []
    for step in range(1, 31):  # one sample a second, 10 revisions a second
        now = float(step)
        target = c.sample(now, rev)
        if target is not None:
            decided.append((now, target))
            c.compacted(now)
        rev += 10
    first_time, first_rev = decided[0]
    assert first_time == 10.0
    assert first_rev == 100  # the revision of 10 s before
    # afterwards every compact interval (= period when it is under an hour)
    assert [t for t, _ in decided] == [10.0, 20.0, 30.0]
    assert [r for _, r in decided] == [100, 190, 290]


def test_periodic_over_an_hour_compacts_hourly_keeping_the_period() -> None:
    c = PeriodicCompactor(period_s=5 * 3600.0, now=0.0)
    assert c.compact_interval_s == 3600.0 and c.sample_interval_s == 360.0
    now, rev, decided = 0.0, 1, []
    while now < 8 * 3600:
        now += c.sample_interval_s
        rev += 1
        target = c.sample(now, rev)
        if target is not None:
            decided.append((now, target))
            c.compacted(now)
    assert decided[0][0] == 5 * 3600.0
    # each compaction keeps about 5 h of history: 50 samples of 6 minutes
    assert all(abs((rev_at - target) - 50) <= 1 for rev_at, target in
               [(int(t / 360.0) + 1, r) for t, r in decided])
    assert [t for t, _ in decided][1] - decided[0][0] == 3600.0


def test_revision_mode_keeps_the_last_n_revisions() -> None:
    c = RevisionCompactor(retention=1000)
    assert c.check(500) is None
    assert c.check(1500) == 500
    c.compacted(500)
    assert c.check(1500) is None  # nothing new since
    assert c.check(2100) == 1100

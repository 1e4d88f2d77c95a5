from kafka import TopicPartition

from pipelines.kafka.publish import _CommitTracker

TP = TopicPartition("t", 0)


def test_commits_contiguous_acknowledgements():
    tracker = _CommitTracker()
    tracker.acknowledge(TP, 0, 100)
    assert tracker.ready() == {TP: 100}
    tracker.acknowledge(TP, 100, 250)
    assert tracker.ready() == {TP: 250}
    assert tracker.ready() == {}


def test_holds_back_past_a_gap_until_it_is_acknowledged():
    tracker = _CommitTracker()
    tracker.acknowledge(TP, 0, 100)
    tracker.acknowledge(TP, 200, 300)
    assert tracker.ready() == {TP: 100}
    tracker.acknowledge(TP, 100, 200)
    assert tracker.ready() == {TP: 300}


def test_replayed_batch_never_moves_the_commit_back():
    tracker = _CommitTracker()
    tracker.acknowledge(TP, 0, 100)
    tracker.ready()
    tracker.acknowledge(TP, 50, 100)
    assert tracker.ready() == {}

"""The drift checks' pure evaluation of AWS answers (the calls: tests/test_pipeline_e2e.py)."""

from __future__ import annotations

from watcher.pipeline import ALL_MANAGEMENT_EVENTS, rule_result, trail_result

QUEUE = "arn:aws:sqs:us-east-1:111122223333:breakglass-watcher-events"
A, R = "111122223333", "eu-west-1"


def test_a_rule_must_exist_deliver_all_management_events_and_target_the_queue() -> None:
    good = {"State": ALL_MANAGEMENT_EVENTS}
    assert rule_result("r", good, [QUEUE], QUEUE, A, R).ok
    missing = rule_result("r", None, [], QUEUE, A, R)
    assert not missing.ok and "does not exist" in missing.reason
    plain = rule_result("r", {"State": "ENABLED"}, [QUEUE], QUEUE, A, R)
    assert not plain.ok and "is ENABLED, not ENABLED_WITH_ALL" in plain.reason
    assert not rule_result("r", {"State": "DISABLED"}, [QUEUE], QUEUE, A, R).ok
    untargeted = rule_result("r", good, [QUEUE + "-other"], QUEUE, A, R)
    assert not untargeted.ok and "does not target the queue" in untargeted.reason


def test_a_logging_trail_must_apply_to_the_region() -> None:
    home = {"Name": "home", "TrailARN": "t1", "HomeRegion": R, "IsMultiRegionTrail": False}
    other = {"Name": "other", "TrailARN": "t2", "HomeRegion": "us-east-1"}
    multi = {"Name": "org", "TrailARN": "t3", "HomeRegion": "us-east-1", "IsMultiRegionTrail": True}
    assert trail_result([home], {"t1": True}, A, R).ok
    assert trail_result([multi], {"t3": True}, A, R).ok
    stopped = trail_result([home, multi], {"t1": False, "t3": False}, A, R)
    assert not stopped.ok and "no trail of eu-west-1 is logging (home, org)" in stopped.reason
    elsewhere = trail_result([other], {"t2": True}, A, R)
    assert not elsewhere.ok and "no CloudTrail trail applies to eu-west-1" in elsewhere.reason
    assert not trail_result([], {}, A, R).ok

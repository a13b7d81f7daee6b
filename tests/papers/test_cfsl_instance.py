"""Seed arXiv 2209.07863 (CFSL instance test, Kowadlo et al. 2024): the quick reproduction measures all three claims."""

from lifelong.papers import all_papers


def test_quick_reproduction_measures_the_claims():
    paper = {p.short_name: p for p in all_papers()}["cfsl-instance"]
    claim = paper.reproduce("quick")
    m = claim.measured
    assert claim.held == (m["a_held"] and m["b_held"] and m["c_held"])
    assert m["a_held"] == (m["class_test/protonet/N_C=50"] < m["class_test/protonet/N_C=10"])
    assert m["instance_test/replay_gain"] == round(m["instance_test/tune+replay"] - m["instance_test/tune"], 4)
    assert claim.held  # measured at quick scale: ProtoNet 51 % -> 38 %, replay +18 pts, 40 / 37.5 / 29.5 %

"""Dependency levels and cycle detection, computed once when a plan is built."""

from __future__ import annotations

import pytest
from core_builders import Const, spec

from stream_engine.core.plan import dependency_levels, find_cycle, ordering_edges


def ids(levels):
    return [[s.rule_id for s in level] for level in levels]


def test_independent_rules_share_the_first_level_in_declaration_order():
    specs = [spec("b", Const()), spec("a", Const()), spec("c", Const())]
    assert ids(dependency_levels(specs)) == [["b", "a", "c"]]


def test_a_rule_lands_one_level_below_its_deepest_dependency():
    specs = [
        spec("d", Const(), dependencies=("b", "c")),
        spec("a", Const()),
        spec("b", Const(), dependencies=("a",)),
        spec("c", Const()),
    ]
    assert ids(dependency_levels(specs)) == [["a", "c"], ["b"], ["d"]]


def test_dependencies_outside_the_stage_do_not_order_rules_inside_it():
    specs = [spec("x", Const(), dependencies=("elsewhere",)), spec("y", Const())]
    assert ids(dependency_levels(specs)) == [["x", "y"]]


def test_a_cycle_is_found_and_reported_as_a_path():
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    cycle = find_cycle(edges)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_an_acyclic_graph_has_no_cycle():
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_levels_refuse_a_cycle():
    specs = [spec("a", Const(), dependencies=("b",)), spec("b", Const(), dependencies=("a",))]
    with pytest.raises(ValueError, match="dependency cycle"):
        dependency_levels(specs)


def test_requires_and_provides_add_ordering_edges():
    specs = [
        spec("reader", Const(), requires=("phone",)),
        spec("writer", Const(), provides=("phone",)),
        spec("self", Const(), requires=("x",), provides=("x",)),
    ]
    assert ordering_edges(specs) == {"reader": ["writer"], "writer": [], "self": []}

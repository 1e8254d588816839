from __future__ import annotations

import pytest

from medfed.topology.graphs import build_graph

SITES = ["e", "a", "c", "b", "d", "f"]


def test_ring_links_each_site_to_the_one_before_and_after_in_sorted_order() -> None:
    assert build_graph("ring", SITES) == {
        "a": ("b", "f"),
        "b": ("a", "c"),
        "c": ("b", "d"),
        "d": ("c", "e"),
        "e": ("d", "f"),
        "f": ("a", "e"),
    }


def test_complete_links_all_pairs() -> None:
    graph = build_graph("complete", SITES)
    assert all(set(peers) == set(SITES) - {site} for site, peers in graph.items())


def test_a_random_regular_graph_has_the_degree_and_comes_from_the_seed() -> None:
    graph = build_graph("random_regular", SITES, degree=3, seed=4)
    assert all(len(peers) == 3 for peers in graph.values())
    assert all(site in graph[peer] for site, peers in graph.items() for peer in peers)
    assert graph == build_graph("random_regular", SITES, degree=3, seed=4)
    others = {
        tuple(sorted(build_graph("random_regular", SITES, degree=3, seed=s).items())) for s in range(10)
    }
    assert len(others) > 1


@pytest.mark.parametrize("degree", [0, 6, 7])
def test_an_impossible_degree_is_refused(degree: int) -> None:
    with pytest.raises(ValueError, match="regular graph on 6 sites"):
        build_graph("random_regular", SITES, degree=degree)


def test_one_site_is_no_graph() -> None:
    with pytest.raises(ValueError, match="at least two"):
        build_graph("ring", ["a"])

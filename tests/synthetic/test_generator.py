"""The synthetic log generator: exact size, determinism, planted unrelated domain."""

import csv

from components.transform import TransformConfig, run_transform
from synthetic.generator import SyntheticConfig, generate_rows, write_csv


def test_size_determinism_and_domains():
    config = SyntheticConfig(events=3000, domains=3, items_per_domain=100, clusters=5, seed=4)
    rows = list(generate_rows(config))
    assert len(rows) == 3000 and rows == list(generate_rows(config))
    assert rows != list(
        generate_rows(SyntheticConfig(events=3000, domains=3, items_per_domain=100, clusters=5, seed=5))
    )
    assert {r[2] for r in rows} == {"d0_unrelated", "d1", "d2"}
    assert all(r[1].startswith(r[2] + "_") for r in rows)


def test_planted_domain_is_unrelated_to_the_user_taste():
    """In related domains a user's cluster repeats across domains; in the unrelated one it does not."""
    config = SyntheticConfig(
        events=40000, domains=3, items_per_domain=200, clusters=10, p_sequential=0.0, p_cluster=0.9, seed=1
    )
    per_cluster = config.items_per_domain // config.clusters
    clusters: dict[tuple[str, str], list[int]] = {}
    for user, item, domain, _ in generate_rows(config):
        clusters.setdefault((user, domain), []).append(int(item.rsplit("_i", 1)[1]) // per_cluster)

    def agreement(a, b):
        users = {u for u, d in clusters if d == a} & {u for u, d in clusters if d == b}
        mode = lambda xs: max(set(xs), key=xs.count)  # noqa: E731
        return sum(mode(clusters[(u, a)]) == mode(clusters[(u, b)]) for u in users) / len(users)

    assert agreement("d1", "d2") > 0.6
    assert agreement("d0_unrelated", "d1") < 0.3


def test_csv_feeds_the_transform(tmp_path):
    path = tmp_path / "syn.csv"
    assert write_csv(SyntheticConfig(events=5000, domains=4, seed=2), str(path)) == 5000
    assert next(csv.reader(open(path))) == ["user_id", "item_id", "domain", "timestamp"]
    stats = run_transform(TransformConfig(input=str(path), format="raw", output=str(tmp_path / "o")))
    assert stats["rows_read"] == 5000 == stats["rows_accepted"] + stats["rows_rejected"]
    assert len(stats["domains"]) == 4

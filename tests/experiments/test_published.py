"""Published figures sit beside ours only on the same bytes, format and protocol, and render as table rows."""

import shutil

import pytest

from experiments.published import PUBLISHED, file_sha256, published_rows
from experiments.runner import aggregate, markdown_table
from model_keras.protocol import EvalProtocol

ABXI_PROTOCOL = EvalProtocol(num_negatives=999, pool="domain")


@pytest.fixture
def abe(shared_data):
    return shared_data / "amazon-beauty-electronics" / "abe_50_preprocessed.txt"


def test_abxi_figures_match_its_file_under_its_protocol_by_the_domain_names_given(abe):
    rows = published_rows(str(abe), "abxi", ["Beauty", "Electronics"], ABXI_PROTOCOL)
    assert list(rows) == ["ABXI (WWW'25), published, 5 seeds"]
    (by_domain,) = rows.values()
    assert by_domain["Beauty"]["NDCG@10"] == 0.2200 and by_domain["Electronics"]["HR@10"] == 0.2328
    assert "NDCG@5" not in by_domain["Beauty"]  # not published, so not shown as a figure
    # the seed of our negatives' draw is ours: the protocol is what the label is ranked against
    assert published_rows(str(abe), "abxi", [], EvalProtocol(num_negatives=999, seed=3)) == {
        "ABXI (WWW'25), published, 5 seeds": {"domain_0": by_domain["Beauty"], "domain_1": by_domain["Electronics"]}
    }


def test_nothing_is_borrowed_by_another_protocol_format_or_copy_of_the_data(abe, tmp_path):
    assert published_rows(str(abe), "abxi", ["Beauty", "Electronics"], EvalProtocol()) == {}  # 99 negatives
    assert published_rows(str(abe), "abxi", [], EvalProtocol(num_negatives=999, pool="all")) == {}
    assert published_rows(str(abe), "raw", [], ABXI_PROTOCOL) == {}
    edited = tmp_path / abe.name
    shutil.copy(abe, edited)
    assert file_sha256(str(edited)) == PUBLISHED[0].input_sha256  # a faithful copy matches wherever it lies
    with open(edited, "a", encoding="utf-8") as handle:
        handle.write("99999 1|1\n")  # one more user: not the data the figures were published on
    assert published_rows(str(edited), "abxi", [], ABXI_PROTOCOL) == {}
    assert published_rows(str(tmp_path), "abxi", [], ABXI_PROTOCOL) == {}  # a folder is never matched


def test_published_rows_follow_ours_with_a_dash_where_a_metric_was_not_published():
    metrics = {m: 0.3 for m in ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR")}
    run = {"domains": {"Beauty": {**metrics, "users": 7}}, "all": {**metrics, "users": 7}}
    table = aggregate({"syncrec": {"seeds": [run], "towers": [{"Beauty": "both"}]}})
    published = {"ABXI": {"Beauty": {"HR@10": 0.3778, "NDCG@10": 0.22}}}
    lines = markdown_table(table, published=published).splitlines()
    assert lines[-1] == "| ABXI | Beauty | | – | 0.3778 | – | 0.2200 | – | - |"
    assert all(line.count("|") == lines[0].count("|") for line in lines)  # every row has the header's columns
    assert markdown_table(table) == "\n".join(lines[:-1])  # without published figures the table is ours alone

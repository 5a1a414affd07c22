"""The Beam transform end to end on real files: accounting, quarantine, ordering, formats, CLI."""

import glob
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2

from components.transform import TransformConfig, run_transform
from schemas.vocabulary import Vocabulary
from model_keras.input_fn import make_dataset

HEADER = "timestamp,domain,user_id,item_id"  # any column order is accepted
GOOD_USERS = [
    # u1: 4 events in two domains; u2: 3 events; both kept.
    "100,Books,u1,b1",
    "200,Toys,u1,t1",
    "300,Books,u1,b2",
    "400,Toys,u1,t2",
    "100,Books,u2,b1",
    "150,Books,u2,b3",
    "160,Toys,u2,t1",
]
BROKEN_ROWS = {
    "wrong_field_count": "100,Books,u3",
    "empty_row": "",
    "missing_user_id": None,  # written by a JSON line below
    "empty_user_id": "100,Books,,b1",
    "empty_item_id": "100,Books,u3,",
    "empty_domain": "100,,u3,b1",
    "empty_timestamp": ",Books,u3,b1",
    "bad_timestamp": "yesterday,Books,u3,b1",
    "timestamp_out_of_range": "-7,Books,u3,b1",
    "unknown_domain": "100,Cars,u3,c1",
    "control_characters": '100,Books,u3,"b\x07x"',
    "id_too_long": "100,Books," + "u" * 300 + ",b1",
}


def read_examples(out, split):
    examples = []
    for path in sorted(glob.glob(os.path.join(out, split, "*.tfrecord.gz"))):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            examples.append(example_pb2.SequenceExample.FromString(record.numpy()))
    return examples


def seq(example, name):
    return [f.int64_list.value[0] for f in example.feature_lists.feature_list[name].feature]


def user(example):
    return example.context.feature["user_id"].bytes_list.value[0].decode()


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """A CSV with good users, one row of each broken kind, a non-UTF-8 row, plus a JSONL file."""
    folder = tmp_path_factory.mktemp("corpus")
    rows = [r for r in BROKEN_ROWS.values() if r is not None]
    with open(folder / "log.csv", "wb") as handle:
        handle.write((HEADER + "\n").encode())
        for line in GOOD_USERS[:4] + rows + GOOD_USERS[4:]:
            handle.write((line + "\n").encode())
        handle.write(b"100,Books,u3,caf\xe9\n")  # latin-1 byte: not UTF-8
        handle.write(b"100,Books,u_short,b1\n200,Books,u_short,b2\n")  # only 2 events: below min
    json_lines = [
        '{"user_id": "u2", "item_id": "t9", "domain": "Toys", "timestamp": 170}',
        '{"item_id": "b1", "domain": "Books", "timestamp": 1}',  # missing_user_id
        '{"user_id": "u3", "item_id": {"a": 1}, "domain": "Books", "timestamp": 1}',  # bad_id_type
        '{"user_id": "u3", ',  # malformed_json
        '[1, 2, 3]',  # not_an_object
    ]
    (folder / "more.jsonl").write_text("\n".join(json_lines) + "\n")
    out = tmp_path_factory.mktemp("corpus_out")
    allow = ["Books", "Toys"]
    stats = {
        "log.csv": run_transform(
            TransformConfig(
                input=str(folder / "log.csv"), format="raw", output=str(out / "log"), max_len=6, domains=allow
            )
        ),
        "both": run_transform(
            TransformConfig(input=str(folder / "*"), format="raw", output=str(out / "both"), max_len=6, domains=allow)
        ),
    }
    return folder, out, stats


def test_every_broken_row_is_accounted_for(corpus_run):
    _, out, stats = corpus_run
    s = stats["log.csv"]
    data_rows = len(GOOD_USERS) + len([r for r in BROKEN_ROWS.values() if r is not None]) + 3
    assert s["rows_read"] == data_rows
    assert s["rows_read"] == s["rows_accepted"] + s["rows_rejected"] and s["balanced"]
    assert s["rows_accepted"] == len(GOOD_USERS)
    expected = {reason: 1 for reason, row in BROKEN_ROWS.items() if row is not None}
    expected.update({"non_utf8": 1, "user_below_min_events": 2})
    assert s["rejected_by_reason"] == expected
    assert len(expected) >= 10


def test_quarantine_names_file_line_and_reason(corpus_run):
    folder, out, _ = corpus_run
    lines = []
    for path in glob.glob(str(out / "log" / "quarantine" / "*.jsonl")):
        lines += [json.loads(line) for line in open(path, encoding="utf-8")]
    assert len(lines) == 14
    by_reason = {entry["reason"]: entry for entry in lines}
    assert by_reason["bad_timestamp"]["line"] == 2 + 4 + list(BROKEN_ROWS).index("bad_timestamp") - 1
    assert by_reason["bad_timestamp"]["row"] == "yesterday,Books,u3,b1"
    assert by_reason["non_utf8"]["row"] == "100,Books,u3,caf\\xe9"
    assert all(entry["file"].endswith("log.csv") for entry in lines)


def test_jsonl_and_csv_together_from_a_glob(corpus_run):
    _, _, stats = corpus_run
    s = stats["both"]
    assert s["rows_read"] == s["rows_accepted"] + s["rows_rejected"]
    assert s["rows_accepted"] == len(GOOD_USERS) + 1
    for reason in ("missing_user_id", "bad_id_type", "malformed_json", "not_an_object"):
        assert s["rejected_by_reason"][reason] == 1


def test_examples_and_vocabulary_of_the_good_users(corpus_run):
    _, out, stats = corpus_run
    vocab = Vocabulary.load(str(out / "log" / "vocabulary.json"))
    assert vocab.domain_names == ["Books", "Toys"]
    assert stats["log.csv"]["users"] == 2 and stats["log.csv"]["domains"]["Books"]["items"] == 3
    tests = {user(e): e for e in read_examples(out / "log", "test")}
    assert set(tests) == {"u1", "u2"}
    ids = lambda names: [vocab.item_id("Books" if n[0] == "b" else "Toys", n) for n in names]  # noqa: E731
    assert seq(tests["u1"], "item")[-4:] == [1] + ids(["b1", "t1", "b2"])
    assert seq(tests["u1"], "target_item")[-4:] == ids(["b1", "t1", "b2", "t2"])
    assert tests["u1"].context.feature["label_domain"].int64_list.value[0] == vocab.domain_id("Toys")
    trains = {user(e): e for e in read_examples(out / "log", "train")}
    assert seq(trains["u2"], "target_item")[-1] == ids(["b1"])[0]


def test_ties_keep_input_order(tmp_path):
    rows = ["user_id,item_id,domain,timestamp"] + [f"u,i{k},D,{100 if k < 6 else 50}" for k in range(10)]
    (tmp_path / "ties.csv").write_text("\n".join(rows) + "\n")
    for attempt in range(2):  # and deterministically so
        out = tmp_path / f"out{attempt}"
        run_transform(TransformConfig(input=str(tmp_path / "ties.csv"), format="raw", output=str(out), max_len=12))
        vocab = Vocabulary.load(str(out / "vocabulary.json"))
        (test,) = read_examples(out, "test")
        names = [vocab.item_name(i) for i in seq(test, "target_item") if i]
        assert names == ["i6", "i7", "i8", "i9", "i0", "i1", "i2", "i3", "i4", "i5"]


def test_tab_separated_header_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "log.tsv").write_text(
        "item_id\tuser_id\ttimestamp\tdomain\n" + "".join(f"i{k}\tu\t{k}\tD\n" for k in range(5))
    )
    s = run_transform(TransformConfig(input=str(tmp_path / "log.tsv"), format="raw", output=str(tmp_path / "o1")))
    assert (s["rows_accepted"], s["users"]) == (5, 1)
    table = pa.table(
        {
            "user_id": ["u"] * 4 + [None],
            "item_id": ["a", "b", "c", "d", "e"],
            "domain": ["D"] * 5,
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    pq.write_table(table, tmp_path / "log.parquet")
    s = run_transform(TransformConfig(input=str(tmp_path / "log.parquet"), format="raw", output=str(tmp_path / "o2")))
    assert (s["rows_accepted"], s["rejected_by_reason"]) == (4, {"missing_user_id": 1})


def test_min_item_count_maps_rare_items_to_oov(tmp_path):
    rows = ["user_id,item_id,domain,timestamp"] + [
        f"u{u},{'pop' if k % 2 else f'rare{u}{k}'},D,{k}" for u in range(3) for k in range(4)
    ]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    run_transform(
        TransformConfig(input=str(tmp_path / "log.csv"), format="raw", output=str(tmp_path / "o"), min_item_count=2)
    )
    vocab = Vocabulary.load(str(tmp_path / "o" / "vocabulary.json"))
    assert vocab.domain("D").items == ("pop",)
    (test, *_) = read_examples(tmp_path / "o", "test")
    assert set(seq(test, "target_item")) <= {0, vocab.domain("D").oov_id, vocab.item_id("D", "pop")}


def test_rerun_replaces_old_shards(tmp_path):
    (tmp_path / "a.csv").write_text(
        "user_id,item_id,domain,timestamp\n" + "".join(f"u{u},i,D,{k}\n" for u in range(4) for k in range(3))
    )
    out = tmp_path / "o"
    run_transform(TransformConfig(input=str(tmp_path / "a.csv"), format="raw", output=str(out)))
    (tmp_path / "a.csv").write_text("user_id,item_id,domain,timestamp\nu,i,D,1\nu,j,D,2\nu,k,D,3\n")
    run_transform(TransformConfig(input=str(tmp_path / "a.csv"), format="raw", output=str(out)))
    assert len(read_examples(out, "test")) == 1


def test_round_trip_through_the_input_function(sample_examples):
    out, stats = sample_examples
    vocab = Vocabulary.load(str(out / "vocabulary.json"))
    seen = 0
    for batch in make_dataset(str(out), "test", vocab.num_domains, batch_size=64):
        seen += int(batch["item"].shape[0])
        assert batch["item"].shape[1] == 20 and batch["single_item"].shape[1:] == (vocab.num_domains, 20)
        tf.debugging.assert_equal(batch["label_item"], batch["target_item"][:, -1])
        tf.debugging.assert_equal(batch["label_domain"], batch["target_domain"][:, -1])
        # Every target sits in its own domain's id range, and X^d's targets agree with X's.
        idx = tf.maximum(batch["single_index"], 0)
        dom = tf.maximum(batch["target_domain"] - 1, 0)
        single = tf.gather(tf.gather(batch["single_target"], dom, batch_dims=1), idx, batch_dims=2)
        mask = batch["target_item"] > 0
        tf.debugging.assert_equal(tf.boolean_mask(single, mask), tf.boolean_mask(batch["target_item"], mask))
    assert seen == stats["users"] == 500  # the partial last batch is kept


def test_embedded_sample_stats(sample_examples):
    _, stats = sample_examples
    assert (stats["rows_read"], stats["rows_rejected"], stats["users"]) == (16123, 0, 500)
    assert {k: v["interactions"] for k, v in stats["domains"].items()} == {
        "Books": 4846,
        "Clothing_Shoes_and_Jewelry": 4765,
        "Sports_and_Outdoors": 2505,
        "Toys_and_Games": 2563,
        "Video_Games": 1444,
    }
    assert sum(d["test_users"] for d in stats["domains"].values()) == 500


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "components.transform", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_fails_with_one_clear_message(tmp_path):
    result = run_cli("--input", str(tmp_path / "nope*.csv"), "--format", "raw", "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "matches no file" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "bad.csv").write_text("who,what,when\n1,2,3\n")
    result = run_cli("--input", str(tmp_path / "bad.csv"), "--format", "raw", "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "lacks ['user_id', 'item_id', 'domain', 'timestamp']" in result.stderr
    result = run_cli("--output", str(tmp_path / "o"), "--max-len", "0")
    assert result.returncode == 2 and "--max-len must be in [1, 4096] (got 0)" in result.stderr


@pytest.mark.slow
def test_cli_on_the_embedded_sample_prints_stats(tmp_path):
    result = run_cli("--output", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "rows read 16,123 = accepted 16,123 + rejected 0" in result.stdout
    assert json.loads((tmp_path / "o" / "stats.json").read_text())["users"] == 500


@pytest.mark.slow
def test_abxi_beauty_electronics(shared_data, tmp_path):
    s = run_transform(
        TransformConfig(
            input=str(shared_data / "amazon-beauty-electronics" / "abe_50_preprocessed.txt"),
            format="abxi",
            output=str(tmp_path / "o"),
            domain_names=["Beauty", "Electronics"],
        )
    )
    assert (s["rows_read"], s["rows_accepted"], s["users"]) == (114129, 114129, 4474)
    assert {k: (v["items"], v["interactions"]) for k, v in s["domains"].items()} == {
        "Beauty": (10379, 50329),
        "Electronics": (14188, 63800),
    }
    # ABXI's protocol on its own split: the same labels (the last and second-to-last event of each line, in file
    # order, whatever timestamps tie), and negatives drawn outside the same items. ABXI's loader excludes every
    # item of the sequence it loaded for that split (the user's last 50 events up to and including the label);
    # the evaluator excludes the example's window (the T = 50 places of history and the label), which holds
    # exactly those items on this data (at most 50 events a user), so the 999-negative figures are comparable.
    folder = shared_data / "amazon-beauty-electronics"
    asin = {str(idx): name for name, (idx, _) in json.loads((folder / "map_item_50.txt").read_text()).items()}
    reviewer = {str(idx): name for name, idx in json.loads((folder / "map_user_50.txt").read_text()).items()}
    sequences = {}
    for line in (folder / "abe_50_preprocessed.txt").read_text().splitlines():
        user, *events = line.split()
        sequences[reviewer[user]] = [asin[e.split("|")[0]] for e in events][-50:]
    vocabulary = Vocabulary.load(str(tmp_path / "o" / "vocabulary.json"))
    names = vocabulary.item_names()
    for split, end in (("test", None), ("valid", -1)):
        checked = 0
        for batch in make_dataset(str(tmp_path / "o"), split, vocabulary.num_domains, batch_size=512):
            windows = tf.concat([batch["item"], batch["target_item"]], axis=1).numpy()
            for user, label, window in zip(batch["user_id"].numpy(), batch["label_item"].numpy(), windows):
                loaded = sequences[user.decode()][:end]
                assert names[label] == loaded[-1]
                assert {names[i] for i in window if i > 1} == set(loaded)
                checked += 1
        assert checked == 4474


@pytest.mark.slow
def test_s3rec_beauty(shared_data, tmp_path):
    s = run_transform(
        TransformConfig(
            input=str(shared_data / "s3rec-beauty" / "Beauty.txt"), format="s3rec", output=str(tmp_path / "o")
        )
    )
    assert (s["rows_accepted"], s["users"], s["items"]) == (198502, 22363, 12101)
    assert list(s["domains"]) == ["Beauty"]

"""The hand-written SequenceExample encoder matches the protobuf API exactly."""

import random

from tensorflow.core.example import example_pb2

from components.example_codec import encode_sequence_example
from components.sequences import build_example


def proto_reference(ex) -> example_pb2.SequenceExample:
    msg = example_pb2.SequenceExample()
    ctx = msg.context.feature
    ctx["user_id"].bytes_list.value.append(ex.user_id.encode())
    ctx["split"].bytes_list.value.append(ex.split.encode())
    for name in ("history_length", "label_item", "label_domain"):
        ctx[name].int64_list.value.append(getattr(ex, name))
    lists = msg.feature_lists.feature_list
    for name in ("item", "domain", "target_item", "target_domain", "single_index"):
        for v in getattr(ex, name):
            lists[name].feature.add().int64_list.value.append(v)
    for name in ("single_item", "single_target"):
        for step in getattr(ex, name):
            lists[name].feature.add().int64_list.value.extend(step)
    return msg


def test_encoded_bytes_parse_to_the_reference_message():
    rng = random.Random(3)
    for trial in range(50):
        history = [
            (rng.choice([2, 5, 127, 128, 300, 2**21, 2**22 + 7, 2**40]), rng.randint(1, 6))
            for _ in range(rng.randint(0, 30))
        ]
        ex = build_example(
            f"user-é-{trial}",
            rng.choice(["train", "valid", "test"]),
            history,
            (rng.randint(2, 10**6), rng.randint(1, 6)),
            6,
            rng.randint(1, 25),
        )
        parsed = example_pb2.SequenceExample.FromString(encode_sequence_example(ex))
        assert parsed == proto_reference(ex)
        assert list(parsed.feature_lists.feature_list["single_index"].feature[0].int64_list.value)[0] in range(-1, 25)

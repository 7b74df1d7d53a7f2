"""The stored KeyValue bytes are protobuf's encoding of mvccpb.KeyValue.

The reference encoder is protobuf itself, driven by a KeyValue descriptor built here
from the field numbers of etcd's kv.proto, so the check does not depend on the
generated code of another branch.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.storage.mvcc.kv_codec import KeyValue, decode_kv, encode_kv


def _reference_class() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(name="test_kv.proto", package="mvccpb_test",
                                             syntax="proto3")
    msg = fdp.message_type.add(name="KeyValue")
    f = descriptor_pb2.FieldDescriptorProto
    for name, num, typ in (("key", 1, f.TYPE_BYTES), ("create_revision", 2, f.TYPE_INT64),
                           ("mod_revision", 3, f.TYPE_INT64), ("version", 4, f.TYPE_INT64),
                           ("value", 5, f.TYPE_BYTES), ("lease", 6, f.TYPE_INT64)):
        msg.field.add(name=name, number=num, type=typ, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("mvccpb_test.KeyValue"))


PB = _reference_class()
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
kvs = st.builds(KeyValue, st.binary(max_size=600), i64, i64, i64, st.binary(max_size=300), i64)


@given(kvs)
def test_bytes_equal_protobuf(kv: KeyValue) -> None:
    ref = PB(key=kv.key, create_revision=kv.create_revision, mod_revision=kv.mod_revision,
             version=kv.version, value=kv.value, lease=kv.lease)
    assert encode_kv(kv) == ref.SerializeToString(deterministic=True)
    assert decode_kv(encode_kv(kv)) == kv


def test_decode_accepts_any_field_order_and_unknown_fields() -> None:
    # value (5) before key (1), plus an unknown varint field 9 and a fixed64 field 10
    raw = b"\x2a\x01v" + b"\x0a\x01k" + b"\x48\x05" + b"\x51" + b"\x00" * 8 + b"\x18\x07"
    assert decode_kv(raw) == KeyValue(b"k", mod_revision=7, value=b"v")


def test_tombstone_value_is_key_only() -> None:
    assert encode_kv(KeyValue(b"foo")) == b"\x0a\x03foo"


@given(kvs)
def test_bytes_equal_generated_mvccpb(kv: KeyValue) -> None:
    from etcdpy._pb.mvccpb import kv_pb2

    ref = kv_pb2.KeyValue(key=kv.key, create_revision=kv.create_revision,
                          mod_revision=kv.mod_revision, version=kv.version, value=kv.value,
                          lease=kv.lease)
    assert encode_kv(kv) == ref.SerializeToString()
    back = kv_pb2.KeyValue.FromString(encode_kv(kv))
    assert (back.key, back.value, back.version, back.lease) == (kv.key, kv.value, kv.version,
                                                                 kv.lease)

"""MVCC key-value store: revisions, the LMDB key index, reads, batched writes."""

from .kv_codec import Event, EventType, KeyValue, decode_kv, encode_kv
from .kvstore import KVStore, RangeResult, ReadView, StoreMeta, WriteBatch, WriteTxn
from .revision import Revision

__all__ = [
    "Event",
    "EventType",
    "KVStore",
    "KeyValue",
    "RangeResult",
    "ReadView",
    "Revision",
    "StoreMeta",
    "WriteBatch",
    "WriteTxn",
    "decode_kv",
    "encode_kv",
]

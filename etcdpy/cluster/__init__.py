"""Membership: members, their IDs as etcd derives them, and bootstrap from flags or data dir."""

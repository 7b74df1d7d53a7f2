"""Differential testing: the same seeded operations against real etcd 3.5.1 and etcdpy.

`ops` generates a script from a seed, `normalize` turns responses into comparable values,
`runner` drives both servers and reports the first difference.
"""

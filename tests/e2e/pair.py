"""The same etcdctl commands to real etcd 3.5 (the specification) and to etcdpy."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.e2e.harness import Member, etcdctl
from tests.e2e.normalise import IdMap, normalise_stderr, normalise_text, parse_json


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one etcdctl run showed a user, with ids normalised."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Pair:
    """Real etcd (the specification) and etcdpy, fresh and fed the same commands."""

    etcd: Member
    etcdpy: Member
    ids: dict[str, IdMap] = field(default_factory=lambda: {"etcd": IdMap(), "etcdpy": IdMap()})
    # Per-server values (e.g. a lease id each server chose) substituted for `{name}` in args.
    vars: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"etcd": {}, "etcdpy": {}})

    @property
    def members(self) -> tuple[Member, Member]:
        return self.etcd, self.etcdpy

    def _args(self, kind: str, args: Sequence[str]) -> list[str]:
        out = []
        for a in args:
            for name, value in self.vars[kind].items():
                a = a.replace("{" + name + "}", value)
            out.append(a)
        return out

    def each(self, *args: str, input: str | None = None  # noqa: A002
             ) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        """The same etcdctl command against both, raw answers."""
        e, p = (etcdctl([m.endpoint], *self._args(m.kind, args), input=input, check=False)
                for m in self.members)
        return e, p

    def grant(self, ttl: int, var: str = "lease") -> None:
        """Grant a lease on both and remember each server's id as `{var}`."""
        for m, r in zip(self.members, self.each("lease", "grant", str(ttl)), strict=True):
            assert r.returncode == 0, r.stderr
            match = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n", r.stdout)
            assert match, f"{m.kind}: {r.stdout!r}"
            self.vars[m.kind][var] = match.group(1)

    def run(self, *args: str, input: str | None = None,  # noqa: A002
            json_output: bool = False) -> tuple[Outcome, Outcome]:
        """The same etcdctl command against both; answers normalised (json parsed)."""
        outs = []
        for m, r in zip(self.members, self.each(*args, input=input), strict=True):
            ids = self.ids[m.kind]
            if json_output and r.returncode == 0:
                stdout = json.dumps(parse_json(r.stdout, ids), sort_keys=True)
            else:
                stdout = normalise_text(r.stdout, ids)
            outs.append(Outcome(r.returncode, stdout, normalise_stderr(r.stderr, ids)))
        return outs[0], outs[1]

    def same(self, *args: str, input: str | None = None,  # noqa: A002
             json_output: bool = False) -> Outcome:
        """Run on both, assert etcdpy shows exactly what etcd shows, return that."""
        want, got = self.run(*args, input=input, json_output=json_output)
        assert got == want, f"etcdctl {' '.join(args)}\netcd:   {want}\netcdpy: {got}"
        return want

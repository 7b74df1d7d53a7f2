"""The errors a request can end with, each carrying etcd's exact gRPC code and message.

clientv3 turns server errors back into typed errors by matching the message text exactly
(`rpctypes.errStringToError`), and Patroni matches texts and code numbers too: wording and
code must both be etcd's. The server raises these; `server/api/` maps them onto the wire.
The code is the gRPC status code *name* so this module needs no grpc import.
"""

from __future__ import annotations


class EtcdError(Exception):
    """A request failure with etcd's gRPC status code name and message."""

    code: str = "UNKNOWN"
    message: str = "etcdserver: unknown error"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


def _error(name: str, code: str, message: str) -> type[EtcdError]:
    return type(name, (EtcdError,), {"code": code, "message": message})


# KV request validation.
EmptyKey = _error("EmptyKey", "INVALID_ARGUMENT", "etcdserver: key is not provided")
KeyNotFound = _error("KeyNotFound", "INVALID_ARGUMENT", "etcdserver: key not found")
ValueProvided = _error("ValueProvided", "INVALID_ARGUMENT", "etcdserver: value is provided")
LeaseProvided = _error("LeaseProvided", "INVALID_ARGUMENT", "etcdserver: lease is provided")
TooManyOps = _error(
    "TooManyOps", "INVALID_ARGUMENT", "etcdserver: too many operations in txn request"
)
DuplicateKey = _error(
    "DuplicateKey", "INVALID_ARGUMENT", "etcdserver: duplicate key given in txn request"
)
InvalidSortOption = _error("InvalidSortOption", "INVALID_ARGUMENT", "etcdserver: invalid sort option")
RequestTooLarge = _error("RequestTooLarge", "INVALID_ARGUMENT", "etcdserver: request is too large")

# MVCC.
Compacted = _error(
    "Compacted", "OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted"
)
FutureRevision = _error(
    "FutureRevision", "OUT_OF_RANGE", "etcdserver: mvcc: required revision is a future revision"
)
NoSpace = _error("NoSpace", "RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded")
TooManyRequests = _error("TooManyRequests", "RESOURCE_EXHAUSTED", "etcdserver: too many requests")

# Leases.
LeaseNotFound = _error("LeaseNotFound", "NOT_FOUND", "etcdserver: requested lease not found")
LeaseExists = _error("LeaseExists", "FAILED_PRECONDITION", "etcdserver: lease already exists")
LeaseTTLTooLarge = _error("LeaseTTLTooLarge", "OUT_OF_RANGE", "etcdserver: too large lease TTL")

# Membership.
MemberNotFound = _error("MemberNotFound", "NOT_FOUND", "etcdserver: member not found")
MemberExists = _error("MemberExists", "FAILED_PRECONDITION", "etcdserver: member ID already exist")
PeerURLExists = _error("PeerURLExists", "FAILED_PRECONDITION", "etcdserver: Peer URLs already exists")
MemberBadURLs = _error(
    "MemberBadURLs", "INVALID_ARGUMENT", "etcdserver: given member URLs are invalid"
)
NotEnoughStartedMembers = _error(
    "NotEnoughStartedMembers",
    "FAILED_PRECONDITION",
    "etcdserver: re-configuration failed due to not enough started members",
)
MemberNotLearner = _error(
    "MemberNotLearner", "FAILED_PRECONDITION", "etcdserver: can only promote a learner member"
)
LearnerNotReady = _error(
    "LearnerNotReady",
    "FAILED_PRECONDITION",
    "etcdserver: can only promote a learner member which is in sync with leader",
)
TooManyLearners = _error(
    "TooManyLearners", "FAILED_PRECONDITION", "etcdserver: too many learner members in cluster"
)
NotSupportedForLearner = _error(
    "NotSupportedForLearner", "FAILED_PRECONDITION", "etcdserver: rpc not supported for learner"
)

# Leadership and availability.
NotLeader = _error("NotLeader", "FAILED_PRECONDITION", "etcdserver: not leader")
BadLeaderTransferee = _error(
    "BadLeaderTransferee", "FAILED_PRECONDITION", "etcdserver: bad leader transferee"
)
NoLeader = _error("NoLeader", "UNAVAILABLE", "etcdserver: no leader")
LeaderChanged = _error("LeaderChanged", "UNAVAILABLE", "etcdserver: leader changed")
Timeout = _error("Timeout", "UNAVAILABLE", "etcdserver: request timed out")
TimeoutDueToLeaderFail = _error(
    "TimeoutDueToLeaderFail",
    "UNAVAILABLE",
    "etcdserver: request timed out, possibly due to previous leader failure",
)
Stopped = _error("Stopped", "UNAVAILABLE", "etcdserver: server stopped")
UnhealthyCluster = _error("UnhealthyCluster", "UNAVAILABLE", "etcdserver: unhealthy cluster")
Corrupt = _error("Corrupt", "DATA_LOSS", "etcdserver: corrupt cluster")
Canceled = _error("Canceled", "CANCELLED", "etcdserver: request canceled")

# Auth (rpctypes' texts: clients match them, e.g. clientv3 re-authenticates on the first).
InvalidAuthToken = _error("InvalidAuthToken", "UNAUTHENTICATED", "etcdserver: invalid auth token")
PermissionDenied = _error("PermissionDenied", "PERMISSION_DENIED", "etcdserver: permission denied")
AuthNotEnabled = _error(
    "AuthNotEnabled", "FAILED_PRECONDITION", "etcdserver: authentication is not enabled"
)
RootUserNotExist = _error(
    "RootUserNotExist", "FAILED_PRECONDITION", "etcdserver: root user does not exist"
)
RootRoleNotExist = _error(
    "RootRoleNotExist", "FAILED_PRECONDITION", "etcdserver: root user does not have root role"
)
UserAlreadyExist = _error(
    "UserAlreadyExist", "FAILED_PRECONDITION", "etcdserver: user name already exists"
)
UserEmpty = _error("UserEmpty", "INVALID_ARGUMENT", "etcdserver: user name is empty")
UserNotFound = _error("UserNotFound", "FAILED_PRECONDITION", "etcdserver: user name not found")
RoleAlreadyExist = _error(
    "RoleAlreadyExist", "FAILED_PRECONDITION", "etcdserver: role name already exists"
)
RoleNotFound = _error("RoleNotFound", "FAILED_PRECONDITION", "etcdserver: role name not found")
RoleEmpty = _error("RoleEmpty", "INVALID_ARGUMENT", "etcdserver: role name is empty")
AuthFailed = _error(
    "AuthFailed", "INVALID_ARGUMENT",
    "etcdserver: authentication failed, invalid user ID or password",
)
PermissionNotGiven = _error(
    "PermissionNotGiven", "INVALID_ARGUMENT", "etcdserver: permission not given"
)
RoleNotGranted = _error(
    "RoleNotGranted", "FAILED_PRECONDITION", "etcdserver: role is not granted to the user"
)
PermissionNotGranted = _error(
    "PermissionNotGranted", "FAILED_PRECONDITION",
    "etcdserver: permission is not granted to the role",
)
InvalidAuthMgmt = _error(
    "InvalidAuthMgmt", "INVALID_ARGUMENT", "etcdserver: invalid auth management"
)
# etcd 3.5 has no gRPC mapping for these: they reach the client as code Unknown with the
# auth package's own text (the maintenance admin checks, a no-password user's login).
NoPasswordUser = _error(
    "NoPasswordUser", "UNKNOWN",
    "auth: authentication failed, password was given for no password user",
)
# etcd 3.5.1 maps no auth-revision error either: a request judged at an older auth revision
# than the store's fails with Unknown and this text (clients re-authenticate on it).
AuthOldRevision = _error("AuthOldRevision", "UNKNOWN", "auth: revision in header is old")
RawUserEmpty = _error("RawUserEmpty", "UNKNOWN", "auth: user name is empty")
RawUserNotFound = _error("RawUserNotFound", "UNKNOWN", "auth: user not found")
RawPermissionDenied = _error("RawPermissionDenied", "UNKNOWN", "auth: permission denied")
RawInvalidAuthToken = _error("RawInvalidAuthToken", "UNKNOWN", "auth: invalid auth token")

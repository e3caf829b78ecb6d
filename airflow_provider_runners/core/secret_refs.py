"""References to secrets a command needs, resolved at run time where the command runs.

A DAG never holds a secret value: ``RunnerCommandOperator(secret_env={"DB_PASSWORD": ref})``
names *where* the value lives. Each backend accepts the kinds it can resolve without the value
passing through XCom, a rendered field, user-data or a command line (``Backend.secret_ref_kinds``):

===============  ==========================================  =====================================
kind             form                                        resolved
===============  ==========================================  =====================================
``conn``         ``conn:<conn_id>#<field>``; field is         on the Airflow worker, through the
                 password, login, host, schema, port or       secrets backends (local_host,
                 ``extra.<key>``                              labgrid, bench_http)
``var``          ``var:<key>``                               on the worker, Airflow Variables
``aws-sm``       ``aws-sm:<secret-id>[#<json-key>]``         on the host, by its instance profile
``ssm``          ``ssm:<parameter-name>``                    on the host (SecureString)
``k8s-secret``   ``k8s-secret:<secret-name>#<key>``          by the kubelet (``secretKeyRef``)
===============  ==========================================  =====================================

Values resolved on the worker are registered with Airflow's log masker before use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from airflow_provider_runners.connections import connection_extra
from airflow_provider_runners.exceptions import RunnerSpecError

KINDS = ("conn", "var", "aws-sm", "ssm", "k8s-secret")
LOCAL_KINDS = frozenset({"conn", "var"})
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONN_FIELDS = ("password", "login", "host", "schema", "port")


@dataclass(frozen=True)
class SecretRef:
    kind: str
    name: str
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" + (f"#{self.key}" if self.key else "")


def parse_secret_ref(ref: str, field_name: str = "secret_env") -> SecretRef:
    """Parse one reference; raise RunnerSpecError naming the field, the value and the allowed forms."""
    allowed = (
        "allowed: conn:<conn_id>#<field>, var:<key>, aws-sm:<secret-id>[#<json-key>], "
        "ssm:<parameter-name>, k8s-secret:<name>#<key>"
    )
    if not isinstance(ref, str):
        raise RunnerSpecError(f"{field_name}: expected a secret reference string, got {type(ref).__name__}")
    kind, sep, rest = ref.partition(":")
    name, _, key = rest.partition("#")
    if not sep or kind not in KINDS or not name:
        raise RunnerSpecError(f"{field_name}: {ref!r} is not a secret reference; {allowed}")
    if kind == "conn":
        if not (key in _CONN_FIELDS or (key.startswith("extra.") and len(key) > 6)):
            raise RunnerSpecError(
                f"{field_name}: {ref!r} names no Connection field; allowed fields: "
                f"{', '.join(_CONN_FIELDS)}, extra.<key>"
            )
    elif kind == "k8s-secret" and not key:
        raise RunnerSpecError(f"{field_name}: {ref!r} needs a key: k8s-secret:<name>#<key>")
    elif kind in ("var", "ssm") and key:
        raise RunnerSpecError(f"{field_name}: {ref!r}: {kind} references take no '#<key>'")
    return SecretRef(kind, name, key or None)


def parse_secret_env(secret_env: Mapping[str, str] | None) -> dict[str, SecretRef]:
    """Validate a ``{ENV_NAME: reference}`` mapping at DAG parse time."""
    parsed: dict[str, SecretRef] = {}
    for env_name, ref in dict(secret_env or {}).items():
        if not isinstance(env_name, str) or not _ENV_NAME_RE.match(env_name):
            raise RunnerSpecError(
                f"secret_env: {env_name!r} is not an environment variable name; allowed: [A-Za-z_][A-Za-z0-9_]*"
            )
        parsed[env_name] = parse_secret_ref(ref, f"secret_env.{env_name}")
    return parsed


def check_kinds(refs: Mapping[str, SecretRef], accepted: frozenset[str], backend: str) -> None:
    """Refuse references a backend cannot resolve without exposing the value."""
    for env_name, ref in refs.items():
        if ref.kind not in accepted:
            raise RunnerSpecError(
                f"secret_env.{env_name}: {ref.kind!r} references are not resolved by the {backend!r} "
                f"backend (the value would have to travel in the command); allowed kinds: {sorted(accepted)}"
            )


def resolve_on_worker(refs: Mapping[str, SecretRef]) -> dict[str, str]:
    """Resolve ``conn``/``var`` references through Airflow (secrets backends first); mask every value."""
    from airflow.sdk import BaseHook, Variable

    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover
        mask_secret = None  # type: ignore[assignment]

    values: dict[str, str] = {}
    for env_name, ref in refs.items():
        if ref.kind == "var":
            value = str(Variable.get(ref.name))
        elif ref.kind == "conn":
            conn = BaseHook.get_connection(ref.name)
            key = ref.key or "password"
            raw = (
                connection_extra(ref.name, conn.extra).get(key.removeprefix("extra."))
                if key.startswith("extra.")
                else getattr(conn, key)
            )
            if raw is None or raw == "":
                raise RunnerSpecError(f"secret_env.{env_name}: {ref} is empty in Connection {ref.name!r}")
            value = str(raw)
        else:
            raise RunnerSpecError(f"secret_env.{env_name}: {ref.kind!r} cannot be resolved on the worker")
        if mask_secret is not None:
            mask_secret(value)
        values[env_name] = value
    return values


def masking_sink(output: Callable[[str], None], values: Iterable[str]) -> Callable[[str], None]:
    """Wrap an output sink so that resolved secret values never reach it, whatever logging does.

    Airflow's masker also redacts task logs, but only where its log processors run (not, e.g.,
    in ``dag.test()``'s console output); a command that prints its own secret is masked here.
    """
    secrets = sorted({v for v in values if v}, key=len, reverse=True)
    if not secrets:
        return output

    def sink(line: str) -> None:
        for secret in secrets:
            line = line.replace(secret, "***")
        output(line)

    return sink

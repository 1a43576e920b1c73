"""A tenant's human users (adr/0160). Every function runs in the caller's tenant transaction (RLS)."""

from __future__ import annotations

import psycopg

FIELDS = "id, tenant_id, email, name, role, (password_hash is not null) as has_password, " \
         "(oidc_subject is not null) as has_sso, failed_logins, locked_until, disabled_at, last_login_at, created_at"

# lockout: this many wrong passwords in a row lock the account for LOCK_S (adr/0160)
MAX_FAILED_LOGINS = 5
LOCK_S = 900


def create(conn: psycopg.Connection, *, tenant_id: str, email: str, role: str, name: str = "",
           password_hash: str | None = None, oidc_subject: str | None = None) -> dict:
    return conn.execute(f"insert into users (tenant_id, email, name, role, password_hash, oidc_subject) "
                        f"values (%s, %s, %s, %s, %s, %s) returning {FIELDS}",
                        (tenant_id, email.lower(), name, role, password_hash, oidc_subject)).fetchone()


def get(conn: psycopg.Connection, user_id: str) -> dict | None:
    return conn.execute(f"select {FIELDS} from users where id = %s", (user_id,)).fetchone()


def list_users(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(f"select {FIELDS} from users order by email").fetchall()


def for_login(conn: psycopg.Connection, email: str) -> dict | None:
    """The user with its hash and lock state, row-locked: concurrent wrong guesses all count."""
    return conn.execute("select *, locked_until > now() as locked from users where email = %s for update",
                        (email.lower(),)).fetchone()


def login_failed(conn: psycopg.Connection, user_id: str) -> None:
    conn.execute("update users set failed_logins = failed_logins + 1, "
                 "locked_until = case when failed_logins + 1 >= %s then now() + make_interval(secs => %s) "
                 "else locked_until end where id = %s", (MAX_FAILED_LOGINS, LOCK_S, user_id))


def login_succeeded(conn: psycopg.Connection, user_id: str) -> None:
    conn.execute("update users set failed_logins = 0, locked_until = null, last_login_at = now() where id = %s",
                 (user_id,))


def update(conn: psycopg.Connection, user_id: str, **changes) -> dict | None:
    cols = {k: v for k, v in changes.items() if k in ("name", "role", "password_hash", "disabled_at",
                                                      "failed_logins", "locked_until", "oidc_subject")}
    if not cols:
        return get(conn, user_id)
    sets = ", ".join(f"{k} = %s" for k in cols)
    return conn.execute(f"update users set {sets} where id = %s returning {FIELDS}",
                        (*cols.values(), user_id)).fetchone()


def active_owners(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) as n from users where role = 'owner' and disabled_at is null"
                        ).fetchone()["n"]


def by_oidc_subject(conn: psycopg.Connection, subject: str) -> dict | None:
    return conn.execute("select * from users where oidc_subject = %s", (subject,)).fetchone()


def tenant_for_login(conn: psycopg.Connection, tenant: str) -> dict | None:
    return conn.execute("select * from tenant_for_login(%s)", (tenant,)).fetchone()


def add_user(db, tenant: str, email: str, role: str, *, password: str | None = None, name: str = "",
             actor: str = "platform-cli") -> tuple[dict, str]:
    """A user of ``tenant`` (name or id) with ``password`` or a generated one: (row, password). For the CLI's
    first owner and the local stack's demo user; the API has its own route."""
    from gateway.auth.passwords import MIN_PASSWORD_LENGTH, hash_password, new_secret
    from gateway.crud import audit

    password = password or new_secret()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    with db.anonymous_tx() as conn:
        t = tenant_for_login(conn, tenant)
    if t is None:
        raise LookupError(f"no tenant {tenant!r}")
    tenant_id = str(t["id"])
    with db.tenant_tx(tenant_id) as conn:
        row = create(conn, tenant_id=tenant_id, email=email, role=role, name=name,
                     password_hash=hash_password(password))
        audit.record(conn, tenant_id=tenant_id, actor=actor, action="user.create", target=f"user:{row['id']}",
                     details={"email": row["email"], "role": role})
    return row, password

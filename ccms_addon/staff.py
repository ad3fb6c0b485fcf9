"""The merchant's people: who may sign in to the dashboard, and as what.

A merchant's first owner is made at install from the platform's shop owner; owners add the others.
Passwords are salted hashes (werkzeug); someone who only ever opens the dashboard from inside the
platform's admin (Shopify's embedded app) needs none.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ccms_addon.store.models import Merchant, Staff, StaffRole, utcnow

MIN_PASSWORD = 10
#: compared against when the email is unknown, so a wrong email costs the same time as a wrong password
_DUMMY_HASH = generate_password_hash("not-a-password-of-anyone")


class StaffError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def add_staff(session: Session, merchant_id: int, email: str, name: str,
              role: StaffRole = StaffRole.AGENT, *, password: str | None = None,
              locale: str = "en") -> Staff:
    email = normalise_email(email)
    if "@" not in email or len(email) > 320:
        raise StaffError("Give a valid email address.", "email")
    if session.scalar(select(Staff.id).where(Staff.merchant_id == merchant_id, Staff.email == email)):
        raise StaffError("Someone with this email is already on the team.", "email")
    staff = Staff(merchant_id=merchant_id, email=email, name=(name or email).strip()[:200],
                  role=role, locale=locale, active=True, created_at=utcnow())
    if password is not None:
        set_password(staff, password)
    session.add(staff)
    session.flush()
    return staff


def set_password(staff: Staff, password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise StaffError(f"Use at least {MIN_PASSWORD} characters.", "password")
    staff.password_hash = generate_password_hash(password)


def authenticate(session: Session, email: str, password: str) -> Staff | None:
    """The active person with this email and password, or None (same cost either way)."""
    candidates = session.scalars(select(Staff).where(
        Staff.email == normalise_email(email), Staff.active.is_(True),
        Staff.password_hash.is_not(None)).order_by(Staff.id)).all()
    if not candidates:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    for staff in candidates:
        if check_password_hash(staff.password_hash, password or ""):
            staff.last_login_at = utcnow()
            return staff
    return None


def ensure_owner(session: Session, merchant: Merchant) -> Staff:
    """The merchant's first owner (made from the merchant's contact on first need)."""
    owner = session.scalar(select(Staff).where(
        Staff.merchant_id == merchant.id, Staff.role == StaffRole.OWNER, Staff.active.is_(True))
        .order_by(Staff.id).limit(1))
    if owner is not None:
        return owner
    email = normalise_email(merchant.email or "") or f"owner-{merchant.id}@merchant.invalid"
    existing = session.scalar(select(Staff).where(Staff.merchant_id == merchant.id,
                                                   func.lower(Staff.email) == email))
    if existing is not None:
        existing.role, existing.active = StaffRole.OWNER, True
        return existing
    return add_staff(session, merchant.id, email, merchant.name or email, StaffRole.OWNER)

"""Creating programs and versioning their terms: the one place the CLI and the merchant API use.

Terms are never edited in place: a change writes version N+1 and points the program at it, so
every enrollment keeps the terms its order was sold with.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ccms_addon.programs.schemas import load_terms
from ccms_addon.store.models import Program, ProgramKind, ProgramStatus, ProgramVersion, utcnow


class ProgramNameTakenError(ValueError):
    pass


def create_program(session: Session, shop_id: int, *, kind: ProgramKind, name: str, terms: dict,
                   actor: str, status: str = "active") -> Program:
    """A program with its first version. ``terms`` must already be validated (``load_terms``)."""
    if session.scalar(select(Program.id).where(Program.shop_id == shop_id, Program.name == name)):
        raise ProgramNameTakenError(f"This shop already has a program named {name!r}.")
    program = Program(shop_id=shop_id, kind=kind, name=name, status=ProgramStatus(status))
    session.add(program)
    session.flush()
    _add_version(session, program, terms, actor)
    return program


def new_version(session: Session, program: Program, raw_terms: dict, actor: str) -> ProgramVersion:
    """Validate ``raw_terms`` for the program's kind and make them current (raises
    ``marshmallow.ValidationError``)."""
    return _add_version(session, program, load_terms(program.kind, raw_terms), actor)


def _add_version(session: Session, program: Program, terms: dict, actor: str) -> ProgramVersion:
    number = (session.scalar(select(func.max(ProgramVersion.version))
                             .where(ProgramVersion.program_id == program.id)) or 0) + 1
    version = ProgramVersion(shop_id=program.shop_id, program_id=program.id, version=number,
                             terms=terms, created_by=actor, created_at=utcnow())
    session.add(version)
    session.flush()
    program.current_version_id = version.id
    program.updated_at = utcnow()
    return version


def get_program(session: Session, shop_id: int, program_id: int) -> Program | None:
    return session.scalar(select(Program).where(Program.shop_id == shop_id,
                                                Program.id == program_id))


def list_programs(session: Session, shop_id: int) -> list[Program]:
    return list(session.scalars(select(Program).where(Program.shop_id == shop_id)
                                .order_by(Program.id)))


def current_terms(session: Session, program: Program) -> ProgramVersion:
    return session.get(ProgramVersion, program.current_version_id)


def public_guarantees(session: Session, shop_id: int) -> list[dict]:
    """The shop's active guarantees as a shopper may see them (the widget's config): kind, name,
    window, conditions, qualifying events with their labels in ko/en/ja, evidence asked for."""
    from ccms_addon.programs import templates
    out = []
    for program in list_programs(session, shop_id):
        if program.status is not ProgramStatus.ACTIVE or program.kind is ProgramKind.FOLLOW_UP:
            continue
        terms = current_terms(session, program).terms
        events = []
        for event in terms.get("qualifying_events") or ():
            labels = {locale: templates.builtin(locale).get("events", {}).get(event["code"])
                      for locale in templates.LOCALES}
            labels.update(event.get("labels") or {})
            events.append({"code": event["code"],
                           "labels": {k: v for k, v in labels.items() if v}})
        out.append({"kind": program.kind.value, "name": program.name,
                    "window_days": terms.get("window_days"),
                    "window_months": terms.get("window_months"),
                    "conditions": terms.get("conditions") or [], "events": events,
                    "evidence_required": terms.get("evidence_required") or []})
    return out

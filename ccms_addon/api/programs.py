"""After-sale programs and guarantee claims of the calling shop (merchant API).

Programs: list, create, read, change terms (a new version; enrollments keep theirs), pause or
resume. Claims: list (by status), read, decide (approve → the platform refund or return is created
by a job; reject → the shopper is told). Another shop's program or claim is 404.
"""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint, abort
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import func, select

from ccms_addon.api.auth import require_shop
from ccms_addon.money import format_amount
from ccms_addon.programs import claims as claim_service
from ccms_addon.programs import service
from ccms_addon.programs.collections import collection_states, enqueue_refresh, named_collections
from ccms_addon.programs.schemas import ProgramCreateSchema
from ccms_addon.store.models import (Claim, ClaimStatus, Enrollment, Program, ProgramStatus,
                                     ProgramVersion, VocItem)

bp = Blueprint("programs", __name__, url_prefix="/api/v1",
               description="After-sale programs (guarantees, follow-ups) and guarantee claims")
bp.before_request(require_shop)


class CollectionStateSchema(Schema):
    id = fields.String()
    title = fields.String(allow_none=True)
    products = fields.Integer(allow_none=True, metadata={"description": "members at the last read"})
    synced_at = fields.AwareDateTime(allow_none=True, metadata={
        "description": "the last complete read (null: not read yet; guarantees cover its "
                       "products once it is)"})
    error = fields.String(allow_none=True, metadata={"description": "why the last read failed"})


class ProgramSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    status = fields.String()
    version = fields.Integer()
    terms = fields.Dict()
    enrollments = fields.Integer()
    collections = fields.List(fields.Nested(CollectionStateSchema), metadata={
        "description": "the collections the terms name, as last read from the platform"})
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class ProgramUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(("active", "paused", "archived")))
    terms = fields.Dict(metadata={"description": "new terms: saved as the next version"})


class ClaimSchema(Schema):
    id = fields.Integer()
    reference = fields.String()
    program_kind = fields.Function(lambda c: c.program_kind.value)
    status = fields.Function(lambda c: c.status.value)
    order_id = fields.Integer(allow_none=True)
    event = fields.String(allow_none=True)
    event_date = fields.AwareDateTime(allow_none=True)
    eligibility = fields.Dict()
    amount = fields.Method("_amount", metadata={"type": "string", "format": "decimal",
                                                "nullable": True})
    currency = fields.String(allow_none=True)
    lines = fields.List(fields.Dict())
    evidence = fields.Dict()
    decided_by = fields.String(allow_none=True)
    decided_at = fields.AwareDateTime(allow_none=True)
    decision_note = fields.String(allow_none=True)
    settlement = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()

    def _amount(self, claim) -> str | None:
        if claim.amount is None or not claim.currency:
            return None
        return format_amount(claim.amount, claim.currency)


class ClaimListArgsSchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf([s.value for s in ClaimStatus]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=250))


class DecisionSchema(Schema):
    class Meta:
        unknown = RAISE

    decision = fields.String(required=True, validate=validate.OneOf(("approve", "reject")))
    note = fields.String(validate=validate.Length(max=2000), metadata={
        "description": "shown to the shopper"})
    amount = fields.Decimal(as_string=True, validate=validate.Range(min=0, min_inclusive=False),
                            metadata={"description": "overrides the assessed amount on approval",
                                      "minimum": 0, "exclusiveMinimum": True})
    actor = fields.String(load_default="merchant", validate=validate.Length(min=1, max=200))


def _runtime():
    return current_app.extensions["ccms"]


def _program_out(session, program: Program) -> dict:
    version = session.get(ProgramVersion, program.current_version_id)
    count = session.scalar(select(func.count()).select_from(Enrollment)
                           .where(Enrollment.program_id == program.id))
    return dict(id=program.id, kind=program.kind.value, name=program.name,
                status=program.status.value,
                version=version.version, terms=version.terms, enrollments=count,
                collections=collection_states(session, program.shop_id,
                                              named_collections(version.terms)),
                created_at=program.created_at, updated_at=program.updated_at)


@bp.get("/programs")
@bp.response(200, ProgramSchema(many=True))
def list_programs():
    """The shop's programs with their current terms."""
    with _runtime().db.session() as session:
        return [_program_out(session, p) for p in service.list_programs(session, g.shop_id)]


@bp.post("/programs")
@bp.arguments(ProgramCreateSchema)
@bp.response(201, ProgramSchema)
@bp.alt_response(409, description="A program with this name exists")
def create_program(data):
    """Create a program (version 1 of its terms). Orders fulfilled from now on enroll; run
    ``ccms-addon programs enroll --since`` for past orders."""
    runtime = _runtime()
    with runtime.db.session() as session:
        try:
            program = service.create_program(session, g.shop_id, kind=data["kind"],
                                             name=data["name"], terms=data["terms"],
                                             status=data["status"], actor="api")
        except service.ProgramNameTakenError as exc:
            abort(409, message=str(exc))
        program_id = program.id
    return _saved(runtime, program_id, data["terms"])


def _saved(runtime, program_id: int, terms: dict) -> dict:
    """After the commit: a worker reads the collections the terms name; the answer shows them."""
    if named_collections(terms):
        enqueue_refresh(runtime, g.shop_id)
    with runtime.db.session() as session:
        return _program_out(session, service.get_program(session, g.shop_id, program_id))


@bp.get("/programs/<id:program_id>")
@bp.response(200, ProgramSchema)
@bp.alt_response(404, description="No such program in this shop")
def get_program(program_id: int):
    with _runtime().db.session() as session:
        program = service.get_program(session, g.shop_id, program_id)
        if program is None:
            abort(404, message="No such program.")
        return _program_out(session, program)


@bp.patch("/programs/<id:program_id>")
@bp.arguments(ProgramUpdateSchema)
@bp.response(200, ProgramSchema)
@bp.alt_response(404, description="No such program in this shop")
def update_program(data, program_id: int):
    """Change the status and/or the terms (new terms become the next version)."""
    runtime = _runtime()
    with runtime.db.session() as session:
        program = service.get_program(session, g.shop_id, program_id)
        if program is None:
            abort(404, message="No such program.")
        if "terms" in data:
            try:
                service.new_version(session, program, data["terms"], actor="api")
            except ValidationError as exc:
                abort(422, message="The terms are not valid.",
                      messages={"json": {"terms": exc.messages}})
        if "status" in data:
            program.status = ProgramStatus(data["status"])
        terms = service.current_terms(session, program).terms
    return _saved(runtime, program_id, terms)


@bp.get("/claims")
@bp.arguments(ClaimListArgsSchema, location="query", unknown=RAISE)
@bp.response(200, ClaimSchema(many=True))
def list_claims(args):
    """Claims, newest first, optionally of one status (e.g. ``pending`` to decide)."""
    with _runtime().db.session() as session:
        query = (select(Claim, VocItem.reference).join(VocItem, VocItem.id == Claim.voc_item_id)
                 .where(Claim.shop_id == g.shop_id).order_by(Claim.id.desc())
                 .limit(args["limit"]))
        if args.get("status"):
            query = query.where(Claim.status == ClaimStatus(args["status"]))
        rows = session.execute(query).all()
        for claim, reference in rows:
            claim.reference = reference
        return [claim for claim, _ in rows]


def _get_claim(session, claim_id: int) -> Claim:
    row = session.execute(select(Claim, VocItem.reference)
                          .join(VocItem, VocItem.id == Claim.voc_item_id)
                          .where(Claim.shop_id == g.shop_id, Claim.id == claim_id)).first()
    if row is None:
        abort(404, message="No such claim.")
    claim, reference = row
    claim.reference = reference
    return claim


@bp.get("/claims/<id:claim_id>")
@bp.response(200, ClaimSchema)
@bp.alt_response(404, description="No such claim in this shop")
def get_claim(claim_id: int):
    with _runtime().db.session() as session:
        return _get_claim(session, claim_id)


@bp.post("/claims/<id:claim_id>/decision")
@bp.arguments(DecisionSchema)
@bp.response(200, ClaimSchema)
@bp.alt_response(404, description="No such claim in this shop")
@bp.alt_response(409, description="The claim was already decided")
def decide_claim(data, claim_id: int):
    """Approve or reject a pending (or ineligible) claim."""
    runtime = _runtime()
    with runtime.db.session() as session:
        _get_claim(session, claim_id)
    try:
        claim_service.decide(runtime, g.shop_id, claim_id, approve=data["decision"] == "approve",
                             actor=data["actor"], note=data.get("note"),
                             amount=data.get("amount"))
    except LookupError:
        abort(404, message="No such claim.")
    except claim_service.DecisionError as exc:
        abort(409, message=str(exc))
    with runtime.db.session() as session:
        return _get_claim(session, claim_id)

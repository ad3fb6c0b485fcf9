"""Dashboard: the board's repurchase rollup and index, a bigram index for two-character searches

Measured with bench/dashboard.py (1M items, 5M events, 50 shops; docs/benchmarks.md):

* ``repurchase_rollups``: each shop's repurchase counts per cohort (``voc.metrics.board_repurchase``:
  computed by the first board that needs them, kept an hour at most, and a cohort's bounds move at
  local midnight). Deleted with the shop.
* PostgreSQL: ``ix_voc_items_board`` (shop_id, created_at) carrying what the board reads of an
  item: its 30-day series (15,000 items of the biggest shop: ~20 ms instead of ~40, it read
  ~3,900 table pages) and the week's top categories and products (~1 ms instead of ~3, 935
  pages) from the index alone. SQLite reads ``ix_voc_items_shop_created``, as before.
* PostgreSQL: ``ccms_bigrams(shop, VARIADIC texts)``, the two-character substrings of the
  lower-cased texts that hold a non-ASCII character, each prefixed with the shop id, and
  ``ix_voc_items_bigrams``, a GIN index over ``ccms_bigrams(shop_id, subject, body,
  contact_name)``. A search of two characters (too short for the trigram indexes; Korean and
  Japanese words are often two) looks up the items holding its pair there first
  (``voc.inbox._pair_holders``); its ``ILIKE`` conditions stay, so the index only narrows the
  rows they read. ASCII-only pairs are left out: English text would make the index several
  times larger, and a two-letter Latin search matches too many items to need it. Without
  ``pg_bigm`` (not packaged for this server) this is a bigram index in plain SQL, no extension.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 14:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

from ccms_addon.store.models import UtcDateTime


#: 64-bit keys on PostgreSQL, the rowid on SQLite (as models.Id)
Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

#: what the board reads of the items of a period (``voc.metrics.daily_series``, ``_ranked``)
BOARD_COLUMNS = ['kind', 'category', 'product_ref', 'satisfaction', 'satisfaction_requested_at',
                 'acknowledged_at', 'responded_at', 'closed_at']

#: The keys of one row: ``<shop id>:<pair>`` for each two-character substring of its lower-cased
#: texts that holds a non-ASCII character. Per shop, so that a pair common in one shop (or
#: language) costs nothing to a search in another. lower() and LIKE count characters alike:
#: "lower(term) is in lower(field)" (what ILIKE tests) implies that every pair of lower(term)
#: is a pair of lower(field). ``substr`` on the lower-cased text (54 µs a row on the benchmark's
#: Japanese items; array subscripts and ``DISTINCT`` were slower, and GIN drops a row's
#: duplicate keys itself); fields without a non-ASCII character are skipped at once
#: (octet_length is the stored length).
BIGRAMS_FUNCTION = r"""
CREATE OR REPLACE FUNCTION ccms_bigrams(shop bigint, VARIADIC parts text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT ARRAY(
    SELECT shop || ':' || pair FROM (
      SELECT substr(t, i, 2) AS pair
      FROM (SELECT lower(p) AS t FROM unnest(parts) AS p
            WHERE octet_length(p) > char_length(p)) AS texts,
           generate_series(1, char_length(t) - 1) AS i) AS pairs
    WHERE octet_length(pair) > 2)
$$
"""


def upgrade() -> None:
    op.create_table(
        'repurchase_rollups',
        sa.Column('shop_id', Id, nullable=False),
        sa.Column('cohort_from', UtcDateTime(timezone=True), nullable=False),
        sa.Column('cohort_to', UtcDateTime(timezone=True), nullable=False),
        sa.Column('window_days', sa.Integer(), nullable=False),
        sa.Column('resolved_customers', sa.Integer(), nullable=False),
        sa.Column('resolved_repurchased', sa.Integer(), nullable=False),
        sa.Column('never_customers', sa.Integer(), nullable=False),
        sa.Column('never_repurchased', sa.Integer(), nullable=False),
        sa.Column('computed_at', UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['shop_id'], ['shops.id'],
                                name=op.f('fk_repurchase_rollups_shop_id_shops'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('shop_id', 'cohort_from', 'cohort_to', 'window_days',
                                name=op.f('pk_repurchase_rollups')),
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_voc_items_board', 'voc_items', ['shop_id', 'created_at'],
                        unique=False, postgresql_include=BOARD_COLUMNS)
        op.execute(BIGRAMS_FUNCTION)
        op.execute('CREATE INDEX ix_voc_items_bigrams ON voc_items '
                   'USING gin (ccms_bigrams(shop_id, subject, body, contact_name))')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_voc_items_bigrams')
        op.execute('DROP FUNCTION IF EXISTS ccms_bigrams(bigint, VARIADIC text[])')
        op.drop_index('ix_voc_items_board', table_name='voc_items')
    op.drop_table('repurchase_rollups')

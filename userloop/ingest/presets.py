"""Presets for :mod:`userloop.ingest.files`: public data sets with a known layout.

``taobao``
    Alibaba's UserBehavior CSV (no header): ``user_id, item_id, category_id, behavior_type,
    timestamp``. One event per line, named as in the file (``pv``, ``cart``, ``fav``, ``buy``);
    ``distinct_id`` and ``user_id`` are the user id; properties ``{"item_id", "category_id"}`` are
    **strings**, as written in the file (they are identifiers, like ``items.item_id``); the timestamp
    is the unix seconds (a UTC instant). It is the generic CSV import with the column names and the
    mapping below.

``online_retail``
    UCI "Online Retail" (``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
    CustomerID, Country``) or "Online Retail II" (``Invoice, ..., Price, Customer ID, Country``)
    invoice lines. One event per invoice: ``purchase``, or ``purchase_cancelled`` for invoices
    starting with ``C`` (their revenue is negative). Properties: ``revenue`` (round(sum(quantity *
    price), 2), exact decimal arithmetic), ``quantity`` (sum), ``stock_codes`` (in line order),
    ``lines`` (count), ``invoice_no``, ``currency`` ("GBP"). ``distinct_id`` = ``user_id`` = the
    customer id as an integer string ("13085", also from II's "13085.0"); ``country`` = Country;
    ``timestamp`` = the invoice's earliest InvoiceDate read as Europe/London local time;
    ``message_id`` = ``invoice-<InvoiceNo>``, so an invoice present in both files is stored once.
    Lines without a customer id (or with an unreadable date, quantity or price) are skipped and
    counted per line.
"""

from __future__ import annotations

from userloop.errors import UserloopError
from userloop.ingest.event import EVENT_FIELDS

PRESETS = ("taobao", "online_retail")

TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
TAOBAO_MAPPING = {
    "behavior_type": "event",
    "user_id": "user_id",  # distinct_id falls back to user_id
    "timestamp": "timestamp",
    "item_id": "properties.item_id",
    "category_id": "properties.category_id",
}

_RETAIL_LAYOUTS = (
    # invoice, price, customer: the names that differ between the two data sets
    {"invoice": "InvoiceNo", "price": "UnitPrice", "customer": "CustomerID"},
    {"invoice": "Invoice", "price": "Price", "customer": "Customer ID"},
)
_RETAIL_COMMON = {"code": "StockCode", "quantity": "Quantity", "date": "InvoiceDate", "country": "Country"}


_TIME_FIELDS = {"timestamp", "original_timestamp", "sent_at", "received_at"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def event_columns_sql(exprs: dict[str, str]) -> str:
    """The select list of the events table's columns, in order; NULL where ``exprs`` has none."""
    out = []
    for name in EVENT_FIELDS:
        default = "CAST(NULL AS TIMESTAMPTZ)" if name in _TIME_FIELDS else "CAST(NULL AS VARCHAR)"
        out.append(f"{exprs.get(name, default)} AS {_q(name)}")
    return ",\n               ".join(out)


def online_retail_sql(
    read_sql: str, names: list[str], project_id: int, received_sql: str
) -> tuple[str, str, str]:
    """SQL for the online_retail preset over ``read_sql`` (a ``read_csv(...)`` call, all VARCHAR).

    Returns ``(create_lines, events, skipped)``: a statement materialising the invoice lines (with
    ``ul_reason`` NULL for usable lines), the events query (EVENTS_SCHEMA columns, file order) and
    a query of ``(reason, count)`` for the skipped lines.
    """
    cols = None
    for layout in _RETAIL_LAYOUTS:
        wanted = {**layout, **_RETAIL_COMMON}
        if all(n in names for n in wanted.values()):
            cols = {k: _q(v) for k, v in wanted.items()}
            break
    if cols is None:
        need = ", ".join([*_RETAIL_LAYOUTS[0].values(), *_RETAIL_COMMON.values()])
        need_ii = ", ".join([*_RETAIL_LAYOUTS[1].values(), *_RETAIL_COMMON.values()])
        raise UserloopError(
            "missing_field",
            f"preset online_retail needs the columns {need} (or Online Retail II's {need_ii}); "
            f"the file has: {', '.join(names)}",
            "preset",
        )
    date = f"trim({cols['date']})"
    create = f"""
        CREATE TEMP TABLE ul_src AS SELECT * FROM {read_sql};
        CREATE TEMP TABLE ul_lines AS
        SELECT *,
               CASE WHEN invoice IS NULL THEN 'missing_invoice'
                    WHEN customer IS NULL THEN 'missing_customer'
                    WHEN ts IS NULL THEN 'bad_timestamp'
                    WHEN quantity IS NULL OR price IS NULL THEN 'bad_number' END AS ul_reason
        FROM (
          SELECT rowid AS ul_row,
                 nullif(trim({cols["invoice"]}), '') AS invoice,
                 {cols["code"]} AS code,
                 TRY_CAST({cols["quantity"]} AS BIGINT) AS quantity,
                 coalesce(TRY_CAST({cols["price"]} AS DECIMAL(38, 10)),
                          TRY_CAST(TRY_CAST({cols["price"]} AS DOUBLE) AS DECIMAL(38, 10))) AS price,
                 CASE WHEN regexp_full_match(trim({cols["customer"]}), '[0-9]+(\\.0*)?')
                      THEN regexp_replace(trim({cols["customer"]}), '\\.0*$', '')
                      ELSE nullif(trim({cols["customer"]}), '') END AS customer,
                 TRY(timezone('Europe/London', coalesce(TRY_CAST({date} AS TIMESTAMP),
                                                        try_strptime({date}, '%m/%d/%Y %H:%M')))) AS ts,
                 nullif(trim({cols["country"]}), '') AS country
          FROM ul_src
        );
        DROP TABLE ul_src"""
    exprs = {
        "project_id": f"CAST({int(project_id)} AS INTEGER)",
        "message_id": "'invoice-' || invoice",
        "event": "CASE WHEN starts_with(invoice, 'C') THEN 'purchase_cancelled' ELSE 'purchase' END",
        "type": "'track'",
        "distinct_id": "customer",
        "user_id": "customer",
        "timestamp": "ts",
        "original_timestamp": "ts",
        "received_at": received_sql,
        "properties": "CAST(json_object('revenue', CAST(round(revenue, 2) AS DOUBLE), 'quantity', quantity, "
        "'stock_codes', stock_codes, 'lines', lines, 'invoice_no', invoice, 'currency', 'GBP') AS VARCHAR)",
        "country": "country",
        "source": "'import'",
    }
    events = f"""
        SELECT {event_columns_sql(exprs)}
        FROM (SELECT invoice, arg_min(customer, ul_row) AS customer, min(ts) AS ts,
                     arg_min(country, ul_row) AS country, sum(quantity * price) AS revenue,
                     sum(quantity) AS quantity, list(code ORDER BY ul_row) AS stock_codes,
                     count(*) AS lines, min(ul_row) AS first_row
              FROM ul_lines WHERE ul_reason IS NULL GROUP BY invoice)
        ORDER BY first_row"""
    skipped = "SELECT ul_reason, count(*) FROM ul_lines WHERE ul_reason IS NOT NULL GROUP BY ul_reason"
    return create, events, skipped

"""CSV injection: a cell a spreadsheet would read as a formula is made inert before it leaves in a CSV file.

OWASP's advice: prefix a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return with a single
quote, so Excel, LibreOffice and Google Sheets show it as text instead of evaluating ``=HYPERLINK(...)`` or a DDE
call. The CSV writer's own quoting takes care of embedded quotes and separators.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_STARTS_WITH_TRIGGER = r"^[=+\-@\t\r]"


def neutralised_cell(value: str | None) -> str | None:
    """A text cell safe to open in a spreadsheet: quote-prefixed when it starts like a formula (idempotent)."""
    if value is not None and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def neutralised_column(value: Column) -> Column:
    """``neutralised_cell`` as a Spark column expression."""
    return F.when(value.rlike(_STARTS_WITH_TRIGGER), F.concat(F.lit("'"), value)).otherwise(value)


def formula_safe(df: DataFrame) -> DataFrame:
    """Every string column neutralised; other types cannot start a formula in a CSV file and are left alone."""
    return df.select(*[
        neutralised_column(F.col(f"`{field.name}`")).alias(field.name) if isinstance(field.dataType, StringType)
        else F.col(f"`{field.name}`")
        for field in df.schema.fields
    ])

"""Table and source schemas, read from ``schemas/*.yaml``.

A schema gives each column a Spark SQL type. Raw records are first read with every leaf as a string (so a wrong
type never loses the record), then cast; a value that was present but does not cast is a *cast error*, named
per column so the gate can quarantine it with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import yaml
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib import PROJECT_ROOT

SCHEMA_DIR = PROJECT_ROOT / "schemas"


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    element: tuple[ColumnSpec, ...] = ()

    @property
    def is_struct_array(self) -> bool:
        return self.type == "array"


@dataclass(frozen=True)
class TableSchema:
    name: str
    key: tuple[str, ...]
    version_column: str
    columns: tuple[ColumnSpec, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def raw_struct(self) -> T.StructType:
        """Every leaf a string: how raw JSON/CSV is parsed so that nothing is lost to a bad type."""
        return T.StructType([_raw_field(c) for c in self.columns])

    def typed_columns(self, raw: str = "raw") -> list[Column]:
        return [_typed(F.col(f"{raw}.{c.name}"), c).alias(c.name) for c in self.columns]

    def cast_errors(self, raw: str = "raw") -> Column:
        """Comma-separated names of the columns whose present value did not cast, or null when all cast."""
        failures = [
            F.when(_cast_failed(F.col(f"{raw}.{c.name}"), c), F.lit(c.name)) for c in self.columns
        ]
        joined = F.concat_ws(",", *failures)
        return F.when(joined != "", joined)


def _raw_field(column: ColumnSpec) -> T.StructField:
    if column.is_struct_array:
        element = T.StructType([T.StructField(e.name, T.StringType()) for e in column.element])
        return T.StructField(column.name, T.ArrayType(element))
    return T.StructField(column.name, T.StringType())


def _typed(raw: Column, column: ColumnSpec) -> Column:
    if column.is_struct_array:
        return F.transform(raw, lambda e: F.struct(*[_typed(e[x.name], x).alias(x.name) for x in column.element]))
    return raw.try_cast(column.type)


def _cast_failed(raw: Column, column: ColumnSpec) -> Column:
    if column.is_struct_array:
        return F.coalesce(
            F.exists(raw, lambda e: _any(_cast_failed(e[x.name], x) for x in column.element)), F.lit(False)
        )
    if column.type == "string":
        return F.lit(False)
    return raw.isNotNull() & raw.try_cast(column.type).isNull()


def _any(conditions) -> Column:
    result = F.lit(False)
    for condition in conditions:
        result = result | condition
    return result


def _column(spec: dict) -> ColumnSpec:
    return ColumnSpec(spec["name"], spec["type"], tuple(_column(e) for e in spec.get("element", ())))


@cache
def table_schema(name: str) -> TableSchema:
    path = SCHEMA_DIR / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no schema {path}; add one to schemas/ (see schemas/orders.yaml for the format)")
    spec = yaml.safe_load(path.read_text())
    return TableSchema(
        name=spec["name"],
        key=tuple(spec["key"]),
        version_column=spec["version_column"],
        columns=tuple(_column(c) for c in spec["columns"]),
    )


@dataclass(frozen=True)
class Source:
    name: str
    path: str
    format: str


@cache
def sources() -> dict[str, Source]:
    spec = yaml.safe_load((SCHEMA_DIR / "sources.yaml").read_text())
    return {name: Source(name=name, **fields) for name, fields in spec.items()}


@cache
def countries() -> tuple[dict, ...]:
    """Reference data: ISO-3166 codes, names and phone calling codes (schemas/countries.yaml)."""
    return tuple(yaml.safe_load((SCHEMA_DIR / "countries.yaml").read_text()))


@cache
def rfm_segment_rules() -> tuple:
    """The named RFM segments of ``schemas/rfm_segments.yaml``, in first-match order."""
    from lib.profiles import RfmRule

    rules = yaml.safe_load((SCHEMA_DIR / "rfm_segments.yaml").read_text())
    return tuple(RfmRule(r["segment"], tuple(r["recency"]), tuple(r["frequency_monetary"])) for r in rules)

"""Audiences: named filters over gold.customer_profile, defined as data (``audiences/*.yaml``), compiled to Spark
Columns and checked against the profile's schema before anything runs.

A definition never becomes SQL text: column names must be columns of the profile (or a derived column such as
``clv_percentile``) and are referenced with ``F.col``; values become ``F.lit`` literals of the column's type. So a
"column" such as ``1=1; DROP TABLE x`` is refused, and a value such as ``' OR 1=1 --`` is a string that matches no
one. Membership also needs the channel's consent (unknown consent counts as no) and, for email, an email hash.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lib import PROJECT_ROOT
from lib.config import Config
from lib.profiles import person_of

DEFAULT_DEFINITIONS = PROJECT_ROOT / "audiences"
PROFILE_TABLE = "gold.customer_profile"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")


class AudienceError(ValueError):
    """A definition that cannot be built; the message names the audience, what is wrong and what is allowed."""


@dataclass(frozen=True)
class Channel:
    # The profile column that must be true for a person to be reached on this channel; null (unknown) is no.
    consent_column: str
    # Pseudonymous contact columns the activation file carries besides person_id.
    contact_columns: tuple[str, ...] = ()


CHANNELS: dict[str, Channel] = {
    "email": Channel("consent_email", ("email_hash",)),
    "ads": Channel("consent_ads"),
}


# Columns audiences may filter on besides the profile's own: name -> (type, how it is computed over the profile).
# clv_percentile ranks over one window of the whole profile: on the executors, never on the driver.
DERIVED_COLUMNS = {
    "clv_percentile": (T.DoubleType(), lambda: F.percent_rank().over(Window.orderBy(F.col("clv").asc_nulls_first()))),
}
# Every pseudonymous contact column any channel exports (null in rows of the other channels).
CONTACT_COLUMNS = ("email_hash",)


@dataclass(frozen=True)
class Audience:
    name: str
    channel: str
    description: str
    filter: Any
    source: str

    @property
    def definition_hash(self) -> str:
        """Identifies the definition a membership row came from (channel + filter, canonical JSON)."""
        canonical = json.dumps({"channel": self.channel, "filter": self.filter}, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- loading -------------------------------------------------------------------------------------------------


def definitions_path(config: Config) -> Path:
    return Path(config.audiences.definitions) if config.audiences.definitions else DEFAULT_DEFINITIONS


def load_audiences(path: Path, only: Sequence[str] | None = None) -> list[Audience]:
    """The audiences in ``path`` (a YAML file, or a folder of ``*.yaml`` files each holding a list), checked for
    shape (not yet against the profile schema); ``only`` keeps those names and refuses unknown ones."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files or not all(file.exists() for file in files):
        raise AudienceError(f"no audience definitions at {path}: expected a YAML file or a folder of *.yaml files")
    audiences: dict[str, Audience] = {}
    for file in files:
        try:
            entries = yaml.safe_load(file.read_text()) or []
        except yaml.YAMLError as error:
            raise AudienceError(f"{file}: not valid YAML: {' '.join(str(error).split())}") from error
        if not isinstance(entries, list):
            raise AudienceError(f"{file}: expected a list of audiences (- name: ...), got {type(entries).__name__}")
        for position, entry in enumerate(entries, 1):
            audience = _audience(entry, f"{file.name} entry {position}")
            if audience.name in audiences:
                raise AudienceError(f"audience {audience.name!r} is defined twice: in {audiences[audience.name].source}"
                                    f" and {audience.source}")
            audiences[audience.name] = audience
    if not audiences:
        raise AudienceError(f"no audiences defined in {path}")
    if only:
        unknown = sorted(set(only) - set(audiences))
        if unknown:
            raise AudienceError(f"unknown audience(s) {', '.join(map(repr, unknown))}; defined: "
                                f"{', '.join(sorted(audiences))}")
        return [audiences[name] for name in dict.fromkeys(only)]
    return list(audiences.values())


def _audience(entry: Any, where: str) -> Audience:
    if not isinstance(entry, dict):
        raise AudienceError(f"{where}: an audience is a mapping with name, channel, filter; got {entry!r}")
    name = entry.get("name")
    label = f"audience {name!r} ({where})" if isinstance(name, str) else where
    unknown_keys = sorted(set(entry) - {"name", "channel", "description", "filter"})
    if unknown_keys:
        raise AudienceError(f"{label}: unknown key(s) {', '.join(unknown_keys)}; allowed: name, channel, "
                            f"description, filter")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise AudienceError(f"{label}: name {name!r} must be lower-case letters, digits and underscores, starting "
                            f"with a letter (it names the export folder)")
    channel = entry.get("channel")
    if channel not in CHANNELS:
        raise AudienceError(f"{label}: unknown channel {channel!r}; allowed: {', '.join(CHANNELS)}")
    if "filter" not in entry:
        raise AudienceError(f"{label}: has no filter")
    return Audience(name, channel, str(entry.get("description") or ""), entry["filter"], where)


# --- compiling -----------------------------------------------------------------------------------------------

_COMPARISONS = {"eq": "__eq__", "ne": "__ne__", "gt": "__gt__", "ge": "__ge__", "lt": "__lt__", "le": "__le__"}
_NUMBER_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "between", "in", "not_in", "is_null")
_OPERATORS_BY_KIND = {
    "number": OPERATORS,
    "date": OPERATORS,
    "timestamp": OPERATORS,
    "text": ("eq", "ne", "in", "not_in", "is_null"),
    "boolean": ("eq", "ne", "is_null"),
}


def filter_schema(profile_schema: T.StructType) -> dict[str, T.DataType]:
    """Every column an audience may filter on: the profile's columns and the derived ones."""
    columns = {field.name: field.dataType for field in profile_schema.fields}
    columns.update({name: data_type for name, (data_type, _) in DERIVED_COLUMNS.items()})
    return columns


def audience_condition(audience: Audience, profile_schema: T.StructType) -> Column:
    """The audience's filter as a Column over the profile with DERIVED_COLUMNS added; AudienceError if any part of
    it does not fit the schema."""
    return _Compiler(audience, filter_schema(profile_schema)).node(audience.filter, "filter")


def audience_problems(audiences: Iterable[Audience], profile_schema: T.StructType) -> list[str]:
    """One line per audience that does not fit the profile schema, naming what is wrong and what is allowed."""
    problems = []
    for audience in audiences:
        try:
            audience_condition(audience, profile_schema)
        except AudienceError as error:
            problems.append(str(error))
    return problems


def validate_audiences(audiences: Iterable[Audience], profile_schema: T.StructType) -> None:
    """AudienceError naming every problem (joined by '; ') when any audience does not fit the profile schema."""
    problems = audience_problems(audiences, profile_schema)
    if problems:
        raise AudienceError("; ".join(problems))


def _kind(data_type: T.DataType) -> str | None:
    if isinstance(data_type, _NUMBER_TYPES):
        return "number"
    if isinstance(data_type, T.StringType):
        return "text"
    if isinstance(data_type, T.BooleanType):
        return "boolean"
    if isinstance(data_type, T.DateType):
        return "date"
    if isinstance(data_type, (T.TimestampType, T.TimestampNTZType)):
        return "timestamp"
    return None


class _Compiler:
    def __init__(self, audience: Audience, columns: dict[str, T.DataType]):
        self.audience = audience
        self.columns = columns

    def fail(self, where: str, problem: str) -> AudienceError:
        return AudienceError(f"audience {self.audience.name!r} ({self.audience.source}), {where}: {problem}")

    def node(self, node: Any, where: str) -> Column:
        if not isinstance(node, dict) or not node:
            raise self.fail(where, f"expected a condition {{column: ..., <operator>: ...}} or all/any/not, got "
                                   f"{node!r}")
        if "column" in node:
            return self.condition(node, where)
        if len(node) != 1 or next(iter(node)) not in ("all", "any", "not"):
            raise self.fail(where, f"expected exactly one of all, any, not (or a condition with column), got keys "
                                   f"{', '.join(map(str, node))}")
        (combinator, operand), = node.items()
        if combinator == "not":
            return ~self.node(operand, f"{where}.not")
        if not isinstance(operand, list) or not operand:
            raise self.fail(where, f"{combinator} takes a non-empty list of conditions, got {operand!r}")
        parts = [self.node(child, f"{where}.{combinator}[{i}]") for i, child in enumerate(operand)]
        return reduce(Column.__and__ if combinator == "all" else Column.__or__, parts)

    def condition(self, node: dict, where: str) -> Column:
        name = node["column"]
        if not isinstance(name, str) or name not in self.columns:
            close = difflib.get_close_matches(str(name), self.columns, n=3) if isinstance(name, str) else []
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise self.fail(where, f"column {name!r} is not a column of {PROFILE_TABLE}; {hint}filterable columns: "
                                   f"{', '.join(sorted(self.columns))}")
        where = f"{where} (column {name})"
        type_name = self.columns[name].simpleString()
        kind = _kind(self.columns[name])
        allowed = _OPERATORS_BY_KIND.get(kind, ())
        operators = [key for key in node if key != "column"]
        if len(operators) != 1:
            raise self.fail(where, f"a condition takes exactly one operator, got {operators or 'none'}; allowed for "
                                   f"{type_name}: {', '.join(allowed) or 'none'}")
        operator, value = operators[0], node[operators[0]]
        if operator not in allowed:
            problem = "is not allowed" if operator in OPERATORS else "is not an operator"
            raise self.fail(where, f"operator {operator!r} {problem} on a {type_name} column; allowed: "
                                   f"{', '.join(allowed) or 'none'}")
        column = F.col("`" + name.replace("`", "``") + "`")
        if operator == "is_null":
            if not isinstance(value, bool):
                raise self.fail(where, f"is_null takes true or false, got {value!r}")
            return column.isNull() if value else column.isNotNull()
        if operator in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise self.fail(where, f"{operator} takes a non-empty list of values, got {value!r}")
            literals = [self.spark_literal(self.literal(item, kind, where, operator), self.columns[name])
                        for item in value]
            return column.isin(literals) if operator == "in" else ~column.isin(literals)
        if operator == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise self.fail(where, f"between takes [low, high], got {value!r}")
            low, high = (self.literal(item, kind, where, operator) for item in value)
            if low > high:
                raise self.fail(where, f"between [{value[0]!r}, {value[1]!r}]: low is above high, so no one matches")
            return column.between(self.spark_literal(low, self.columns[name]),
                                  self.spark_literal(high, self.columns[name]))
        literal = self.literal(value, kind, where, operator)
        return getattr(column, _COMPARISONS[operator])(self.spark_literal(literal, self.columns[name]))

    @staticmethod
    def spark_literal(value: Any, data_type: T.DataType) -> Column:
        """``value`` as a Spark literal. A timestamp without a zone is read as Spark reads the column's own text, in
        the session's time zone: a Python datetime literal would be read in this process's local zone."""
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return F.lit(value.isoformat(sep=" ")).cast(data_type)
        return F.lit(value)

    def literal(self, value: Any, kind: str, where: str, operator: str) -> Any:
        """``value`` as a Python value of the column's kind; AudienceError when it is not one."""
        expected = {"number": "a number", "text": "a string", "boolean": "true or false",
                    "date": "a date (YYYY-MM-DD)", "timestamp": "a timestamp (YYYY-MM-DD[THH:MM:SS])"}[kind]
        problem = self.fail(where, f"{operator} value {value!r} ({type(value).__name__}) is not {expected}, as the "
                                   f"column's type requires")
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise problem
            return value
        if kind == "text":
            if not isinstance(value, str):
                raise problem
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise problem
            return value
        try:
            if kind == "date":
                if isinstance(value, dt.datetime):
                    raise problem
                return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
            if isinstance(value, dt.datetime):
                return value
            if isinstance(value, dt.date):
                return dt.datetime.combine(value, dt.time())
            return dt.datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise problem from None


# --- building ------------------------------------------------------------------------------------------------

MEMBER_COLUMNS = ["audience", "person_id", "channel", "as_of", "definition_hash"]


def profile_with_derived_columns(profile: DataFrame) -> DataFrame:
    for name, (_, compute) in DERIVED_COLUMNS.items():
        profile = profile.withColumn(name, compute())
    return profile


def person_email_hashes(customers: DataFrame, identity_map: DataFrame) -> DataFrame:
    """person_id, email_hash: the hash of the person's most recently updated customer record that has an email."""
    newest = Window.partitionBy("person_id").orderBy(F.col("updated_at").desc(), F.col("customer_id"))
    return (
        customers.filter(F.col("email_hash").isNotNull())
        .join(person_of(identity_map, "customer_id").withColumnRenamed("identifier", "customer_id"), "customer_id")
        .withColumn("_rank", F.row_number().over(newest))
        .filter("_rank = 1")
        .select("person_id", "email_hash")
    )


def audience_candidates(profile: DataFrame, audiences: Sequence[Audience], email_hashes: DataFrame,
                        opted_out: DataFrame | None = None) -> DataFrame:
    """Everyone matching an audience's filter: MEMBER_COLUMNS, the channel's CONTACT_COLUMNS, ``consented`` (the
    channel's consent is true, unknown is not consent, and the person has not opted out of the channel:
    ``opted_out`` person_id, channel) and ``reachable`` (consented and every contact column the channel needs is
    known). AudienceError before any Spark work when a definition does not fit the profile."""
    validate_audiences(audiences, profile.schema)
    scored = profile_with_derived_columns(profile).join(email_hashes, "person_id", "left")
    matches = []
    for audience in audiences:
        channel = CHANNELS[audience.channel]
        consented = F.coalesce(F.col(channel.consent_column), F.lit(False))
        contacts = [(F.col(c) if c in channel.contact_columns else F.lit(None).cast("string")).alias(c)
                    for c in CONTACT_COLUMNS]
        reachable = reduce(Column.__and__, [consented, *(F.col(c).isNotNull() for c in channel.contact_columns)])
        matches.append(scored.filter(audience_condition(audience, profile.schema)).select(
            F.lit(audience.name).alias("audience"), "person_id", F.lit(audience.channel).alias("channel"), "as_of",
            F.lit(audience.definition_hash).alias("definition_hash"), *contacts, consented.alias("consented"),
            reachable.alias("reachable")))
    candidates = reduce(DataFrame.unionByName, matches)
    if opted_out is None:
        return candidates
    flagged = candidates.join(opted_out.withColumn("_opted_out", F.lit(True)), ["person_id", "channel"], "left")
    allowed = ~F.coalesce(F.col("_opted_out"), F.lit(False))
    return (flagged.withColumn("consented", F.col("consented") & allowed)
            .withColumn("reachable", F.col("reachable") & allowed).drop("_opted_out"))


def activation_rows(members: DataFrame, audience: Audience) -> DataFrame:
    """What an activation file of ``audience`` holds: pseudonymous ids only (person_id, and the channel's hashed
    contact columns), never a raw email or phone."""
    contact = CHANNELS[audience.channel].contact_columns
    return (members.filter(F.col("audience") == audience.name)
            .select("audience", "channel", "person_id", *contact, "as_of").orderBy("person_id"))


def exports_root(config: Config) -> str:
    """Activation files of audience <name> go to ``<exports_root>/<name>/{csv,parquet}/``."""
    return f"{config.lakehouse_root.rstrip('/')}/exports/audiences"

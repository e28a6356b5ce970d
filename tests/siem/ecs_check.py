"""A checker for ECS documents: every field must be defined (ECS fields by Elastic's own
definitions in msewatch/data/ecs_fields.yaml, msewatch.* by our index template), and every
value must fit its field's type. Categorisation values must be ECS's allowed values, and each
event.type must be an expected type of one of the event's categories."""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import datetime
from typing import Any, Iterator

from msewatch.ecs import ecs_definitions, index_template

# ECS dates: ISO 8601 with a zone (what strict_date_optional_time accepts and what ECS' examples use)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})\Z")
_I64 = (-(2**63), 2**63 - 1)


def flatten(doc: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Leaves as (dotted path, value); lists are leaves (of scalars)."""
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):  # an empty object indexes as nothing
            yield from flatten(v, path + ".")
        else:
            yield path, v


def _fits(es_type: str, v: Any) -> bool:
    if es_type in ("keyword", "match_only_text", "wildcard", "constant_keyword"):
        return isinstance(v, str)
    if es_type == "ip":
        if not isinstance(v, str):
            return False
        try:
            ipaddress.ip_address(v)
        except ValueError:
            return False
        return True
    if es_type == "long":
        return isinstance(v, int) and not isinstance(v, bool) and _I64[0] <= v <= _I64[1]
    if es_type in ("float", "double", "scaled_float"):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if es_type == "boolean":
        return isinstance(v, bool)
    if es_type == "date":
        if not isinstance(v, str) or not _DATE.match(v):
            return False
        try:
            datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    raise AssertionError(f"no check for type {es_type}")


def _template_types() -> tuple[dict[str, str], list[dict]]:
    tpl = index_template()["template"]["mappings"]
    out: dict[str, str] = {}

    def walk(props: dict, prefix: str) -> None:
        for k, m in props.items():
            if "properties" in m:
                walk(m["properties"], f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = m["type"]

    walk(tpl["properties"], "")
    return out, [next(iter(d.values())) for d in tpl["dynamic_templates"]]


def _dynamic_type(path: str, v: Any, dynamic: list[dict]) -> str | None:
    """The type Elasticsearch's dynamic templates would give this JSON value, if any matches."""
    if isinstance(v, bool):
        jtype = "boolean"
    elif isinstance(v, int):
        jtype = "long"
    elif isinstance(v, float):
        jtype = "double"
    elif isinstance(v, str):
        jtype = "string"
    else:
        return None
    for d in dynamic:
        pat = re.escape(d["path_match"]).replace(r"\*", ".*")
        if re.fullmatch(pat, path) and d["match_mapping_type"] == jtype:
            return d["mapping"]["type"]
    return None


def check(doc: dict) -> list[str]:
    """Problems with one document ([] = valid)."""
    defs = ecs_definitions()["fields"]
    mapped, dynamic = _template_types()
    problems: list[str] = []
    seen = set()
    for path, value in flatten(doc):
        seen.add(path)
        d = defs.get(path)
        values = value if isinstance(value, list) else [value]
        if path.startswith("msewatch."):
            es_type = mapped.get(path)
            for v in values:
                t = es_type or _dynamic_type(path, v, dynamic)
                if t is None:
                    problems.append(f"{path}: not mapped by the msewatch index template ({v!r})")
                elif not _fits(t, v):
                    problems.append(f"{path}: {v!r} is not a valid {t}")
            if isinstance(value, list) and not (path.startswith("msewatch.families") or path.startswith("msewatch.reasons.")):
                problems.append(f"{path}: array where a single value is expected")
            continue
        if d is None:
            problems.append(f"{path}: not an ECS field (not in data/ecs_fields.yaml)")
            continue
        is_array = "array" in (d.get("normalize") or [])
        if is_array and not isinstance(value, list):
            problems.append(f"{path}: ECS normalizes it to an array, got {value!r}")
        if not is_array and isinstance(value, list):
            problems.append(f"{path}: array where ECS defines a single value")
        for v in values:
            if not _fits(d["type"], v):
                problems.append(f"{path}: {v!r} is not a valid {d['type']}")
            allowed = d.get("allowed_values")
            if allowed and v not in {a["name"] for a in allowed}:
                problems.append(f"{path}: {v!r} is not an allowed value")
    for name, d in defs.items():
        if d.get("required") and name not in seen:
            problems.append(f"{name}: required, missing")
    ev = doc.get("event") or {}
    cats = ev.get("category") or []
    if cats and isinstance(cats, list):
        expected = {a["name"]: set(a.get("expected_event_types") or ()) for a in defs["event.category"]["allowed_values"]}
        ok = set().union(*(expected.get(c, set()) for c in cats))
        for t in ev.get("type") or []:
            if t not in ok:
                problems.append(f"event.type: {t!r} is not expected for categories {cats}")
    return problems


def emitted_ecs_fields(docs) -> set[str]:
    return {p for d in docs for p, _ in flatten(d) if not p.startswith("msewatch.")}

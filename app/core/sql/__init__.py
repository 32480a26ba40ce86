"""SQL written once, in BigQuery Standard SQL, and run elsewhere through sqlglot.

Files name tables logically (``raw.transactions``); :func:`render` binds those
names to a backend's physical tables and transpiles to its dialect.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp


@cache
def source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.sql").read_text()


def render(name: str, tables: dict[str, str], dialect: str) -> str:
    """The query ``name`` with logical tables mapped to ``tables``, in ``dialect``."""
    # Imported here, not at module import: sqlglot takes ~0.4 s to import, and the
    # warehouse modules that import this one are loaded by tasks that render no SQL.
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(source(name), read="bigquery")
    unknown: set[str] = set()

    def bind(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.db:
            logical = f"{node.db}.{node.name}"
            if logical not in tables:
                unknown.add(logical)
                return node
            bound = exp.to_table(tables[logical], dialect=dialect)
            if node.alias:
                bound.set("alias", node.args["alias"])
            return bound
        return node

    tree = tree.transform(bind)
    if unknown:
        raise KeyError(f"{name}.sql uses unbound tables: {sorted(unknown)}")
    return tree.sql(dialect=dialect, pretty=True)

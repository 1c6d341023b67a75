"""Reading and writing tables, and fingerprinting them."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kubeloop.components.core.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
TableFormat = Literal["csv", "parquet"]


def table_format(path: str | Path, what: str, *, bare: TableFormat | None = None) -> TableFormat:
    """The format a table path's suffix names (a URL's query ignored); `bare` is the format
    of a path with no suffix (None: not allowed)."""
    suffix = Path(str(path).split("?")[0]).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == "" and bare is not None:
        return bare
    raise DataError(f"{what}: expected a .csv or .parquet file, got {path}")


def check_table_path(
    path: str | Path, what: str, *, bare: TableFormat | None = None
) -> TableFormat:
    """Check a table to be read: a local file must exist and not be empty (a URL is left to
    the reader); returns its format (see :func:`table_format`)."""
    p = str(path)
    if "://" not in p:
        if not Path(p).is_file():
            raise DataError(f"{what}: file not found: {p}")
        if Path(p).stat().st_size == 0:
            raise DataError(f"{what}: file is empty: {p}")
    return table_format(p, what, bare=bare)


def read_table(path: str | Path, *, what: str = "data.source") -> pd.DataFrame:
    """Read a CSV or Parquet file, with errors that name the file and the spec field."""
    import pandas as pd

    p = str(path)
    # No suffix: a KFP artifact path, which stages always write as Parquet.
    fmt = check_table_path(p, what, bare="parquet")
    try:
        df = pd.read_csv(p, low_memory=False) if fmt == "csv" else pd.read_parquet(p)
    except pd.errors.EmptyDataError:
        raise DataError(f"{what}: file is empty: {p}") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{what}: cannot read {p}: {err}") from None
    if df.empty:
        raise DataError(f"{what}: file has no rows: {p}")
    return df


def write_table(df: pd.DataFrame, path: str | Path) -> str:
    """Write Parquet (the format every stage exchanges); returns the path."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return str(path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one step
    (readers see the old file or the new one, never half of one); on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def fingerprint(df: pd.DataFrame) -> str:
    """Content hash of a table: same rows and columns (in any row order) → same hash."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(",".join(f"{c}:{df[c].dtype}" for c in df.columns).encode())
    row_hashes = pd.util.hash_pandas_object(df, index=False).sort_values().to_numpy()
    h.update(row_hashes.tobytes())
    return h.hexdigest()[:16]

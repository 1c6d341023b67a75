"""Reading and writing tables, and fingerprinting them."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from kubeloop.components.core.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def read_table(path: str | Path, *, what: str = "data.source") -> pd.DataFrame:
    """Read a CSV or Parquet file, with errors that name the file and the spec field."""
    import pandas as pd

    p = str(path)
    is_remote = "://" in p
    if not is_remote and not Path(p).is_file():
        raise DataError(f"{what}: file not found: {p}")
    if not is_remote and Path(p).stat().st_size == 0:
        raise DataError(f"{what}: file is empty: {p}")
    suffix = Path(p.split("?")[0]).suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(p, low_memory=False)
        elif suffix in (".parquet", ".pq", ""):
            # No suffix: a KFP artifact path, which stages always write as Parquet.
            df = pd.read_parquet(p)
        else:
            raise DataError(f"{what}: expected a .csv or .parquet file, got {p}")
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

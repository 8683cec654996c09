"""Reading a tabular CSV into stripped string columns: pyarrow's reader, this project's rules.

Two readers, one result (`RawTable`):
- the fast path, `pyarrow.csv` with every column typed as a string (kinds are decided later, by
  tabular_table.py's stated rules, never by pyarrow's type inference);
- the strict path, `csv.reader(strict=True)`, which reads record by record and names the line
  of every problem.

pyarrow is more lenient than this project in ways that would change the data silently: it
accepts `"x"y` (text after a closing quote), a quoted field that runs over line breaks even
with `newlines_in_values=False`, NUL bytes, and it cannot say on which line a problem is. So
the fast path checks, on the raw bytes, what it cannot: no NUL byte, no lone CR line break,
the first line not blank, every line that holds a quote re-read alone by
`csv.reader(strict=True)` (a quote error or a record that runs on to the next line fails it),
and every row accounted for: the rows pyarrow returns equal the non-blank lines after the
header, and row i is the i-th of those lines (its line number). If pyarrow refuses the file
(a ragged row, undecodable bytes) or any check fails, the strict reader reads the file again:
it raises the one-line error naming the line, or, where the file is fine by this project's
rules (a line of spaces, which pyarrow calls a short row), its rows are used. Files the byte
checks cannot follow go to the strict reader directly: data.multiline_fields=True (a record's
line is no longer its row number), encodings that are not ASCII-compatible single-byte or
UTF-8 (`FAST_ENCODINGS`), and tables of one column.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from lwi_jax.data.errors import DataError

# Encodings whose line breaks, quotes and delimiters are the ASCII bytes (so the byte checks
# hold) and that pyarrow reads as UTF-8 or transcodes itself.
FAST_ENCODINGS = ("utf-8", "ascii", "latin-1", "iso8859-1", "cp1252")
_BOM = codecs.BOM_UTF8


@dataclasses.dataclass(frozen=True)
class RawTable:
  """Every data row of the file as stripped strings, with the file line each row ends on."""

  path: str
  header: tuple[str, ...]
  columns: dict  # name -> pa.ChunkedArray of str, one entry per row
  lines: np.ndarray  # [N] int, 1-based line number of each row in the file

  def __len__(self) -> int:
    return int(self.lines.shape[0])

  def take(self, rows: np.ndarray) -> "RawTable":
    index = pa.array(rows, pa.int64())
    return RawTable(self.path, self.header, {k: v.take(index) for k, v in self.columns.items()},
                    self.lines[rows])

  def distinct(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values as an object array, index of each row's value in it)."""
    column = self.columns[name]
    encoded = pc.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray)
                                   else column)
    return (encoded.dictionary.to_numpy(zero_copy_only=False),
            encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))

  def strings(self, name: str) -> np.ndarray:
    """The column as an object array; equal values share one str (8 bytes a row, not ~60)."""
    values, index = self.distinct(name)
    return values[index]


def _open_text(path: str, encoding: str):
  if path.endswith(".gz"):
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
  return open(path, encoding=encoding, newline="")


def _quote_error(path: str, start: int, why: str) -> DataError:
  return DataError(f"{path}:{start}: a quoted field opens on this line and {why}; a field "
                   'with quotes inside is written "O""Brien" (quoted, inner quotes doubled). If '
                   "the file's fields really hold line breaks, set data.multiline_fields=True")


def _check_header(path: str, header) -> tuple[str, ...]:
  if not header:
    raise DataError(f"{path}: the file is empty (expected a header row)")
  header = tuple(h.strip() for h in header)
  empty = [i + 1 for i, h in enumerate(header) if not h]
  if empty:
    raise DataError(f"{path}:1: header field(s) {empty} are empty; every column needs a name")
  dupes = sorted({h for h in header if header.count(h) > 1})
  if dupes:
    raise DataError(f"{path}:1: duplicate column name(s) {dupes} in the header")
  return header


def read_table_strict(path: str, delimiter: str = ",", encoding: str = "utf-8-sig",
                      multiline: bool = False) -> RawTable:
  """The record-by-record reader: every problem is a DataError naming the file and line.

  A quoted field that runs over a line break is an error naming the line where its quote
  opened (`multiline`=False, the default): a stray quote would otherwise swallow every row up
  to the next quote into one field, and the study would train on fewer rows without a word.
  """
  rows, lines = [], []
  start = 1
  try:
    with _open_text(path, encoding) as f:
      reader = csv.reader(f, delimiter=delimiter, strict=True)
      header = _check_header(path, next(reader, None))
      start = reader.line_num + 1
      for row in reader:
        if reader.line_num > start and not multiline:
          raise _quote_error(path, start, f"runs on to line {reader.line_num}")
        if not row or (len(row) == 1 and not row[0].strip()):
          start = reader.line_num + 1
          continue  # blank line
        if len(row) != len(header):
          raise DataError(f"{path}:{reader.line_num}: {len(row)} fields, but the header has "
                          f"{len(header)} (data.delimiter={delimiter!r})")
        nul = next((j for j, v in enumerate(row) if "\0" in v), None)
        if nul is not None:
          raise DataError(f"{path}:{reader.line_num}: column {header[nul]!r} holds a NUL byte (a "
                          "binary or UTF-16 file? set data.encoding); a CSV table has none")
        rows.append([v.strip() for v in row])
        lines.append(reader.line_num)
        start = reader.line_num + 1
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not readable as {encoding} ({e}); set data.encoding") from e
  except csv.Error as e:
    raise _quote_error(path, start, f"is not closed properly ({e})") from e
  except (OSError, EOFError) as e:
    raise DataError(f"{path}: unreadable CSV ({e})") from e
  if not rows:
    raise DataError(f"{path}: the file has a header but no data rows")
  columns = {name: pa.chunked_array([pa.array([r[j] for r in rows], pa.string())])
             for j, name in enumerate(header)}
  return RawTable(path, header, columns, np.asarray(lines, np.int64))


class _NotFast(Exception):
  """The fast path cannot vouch for this file; the strict reader decides."""


_CHUNK = 1 << 22  # bytes of the file scanned at a time (whole lines)


def _chunks(path: str):
  """The file's bytes in pieces of whole lines (the last may lack its line break)."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    carry = b""
    while True:
      block = f.read(_CHUNK)
      if not block:
        if carry:
          yield carry
        return
      block = carry + block
      cut = block.rfind(b"\n") + 1
      if cut == 0:
        carry = block
        continue
      carry = block[cut:]
      yield block[:cut]


def _check_quoted_lines(texts: list[str], delimiter: str) -> None:
  """Every line holding a quote is one well-formed record on its own (csv.reader, strict)."""
  reader = csv.reader(texts, delimiter=delimiter, strict=True)
  try:
    for _ in reader:
      pass
  except csv.Error as e:
    raise _NotFast() from e
  if reader.line_num != len(texts):  # a record continued on the next quoted line
    raise _NotFast()


def _scan(path: str, delimiter: str, encoding: str) -> tuple[str, np.ndarray]:
  """(the first line, whether each line is non-blank), after the byte checks of the module
  docstring; the file is streamed, never held whole."""
  first, nonblank = None, []
  for chunk in _chunks(path):
    if first is None and encoding != "utf-8-sig" and chunk.startswith(_BOM):
      raise _NotFast()  # pyarrow would drop a BOM that other encodings keep in the first name
    if b"\0" in chunk or chunk.count(b"\r") != chunk.count(b"\r\n"):
      raise _NotFast()
    data = np.frombuffer(chunk, np.uint8)
    breaks = np.flatnonzero(data == 10)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(chunk)]])
    if starts[-1] == len(chunk):
      starts, ends = starts[:-1], ends[:-1]
    ends = ends - ((ends > starts) & (data[np.maximum(ends - 1, 0)] == 13))
    nonblank.append(ends > starts)
    text_encoding = "utf-8" if encoding == "utf-8-sig" else encoding
    if first is None:
      if not (ends[0] > starts[0]):
        raise _NotFast()  # a blank first line: the strict reader says what it makes of it
      first = chunk[starts[0]:ends[0]].decode(text_encoding)
      first = first[1:] if first.startswith("\ufeff") and encoding == "utf-8-sig" else first
    quoted = np.unique(np.searchsorted(starts, np.flatnonzero(data == 34), side="right") - 1)
    if quoted.size:
      _check_quoted_lines([chunk[a:b].decode(text_encoding)
                           for a, b in zip(starts[quoted], ends[quoted])], delimiter)
  if first is None:
    raise _NotFast()
  return first, np.concatenate(nonblank)


def _read_fast(path: str, delimiter: str, encoding: str) -> RawTable:
  try:
    first, nonblank = _scan(path, delimiter, encoding)
  except UnicodeDecodeError as e:
    raise _NotFast() from e
  header = next(csv.reader([first], delimiter=delimiter))
  if len(header) < 2:
    raise _NotFast()
  header = _check_header(path, header)
  data_lines = np.flatnonzero(nonblank[1:]) + 2  # 1-based, blank lines skipped
  try:
    table = pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(autogenerate_column_names=True, skip_rows=1,
                                        encoding="utf-8" if encoding == "utf-8-sig" else encoding),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char='"',
                                          double_quote=True, escape_char=False,
                                          newlines_in_values=False, ignore_empty_lines=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={f"f{j}": pa.string() for j in range(len(header))},
            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False))
  except (pa.ArrowException, UnicodeDecodeError, LookupError) as e:
    raise _NotFast() from e
  if table.num_columns != len(header) or table.num_rows != data_lines.size:
    raise _NotFast()  # a row not accounted for
  if not data_lines.size:
    raise DataError(f"{path}: the file has a header but no data rows")
  raw_columns, columns = table.columns, {}
  del table
  for j, name in enumerate(header):  # one column's copy at a time, the original freed
    columns[name] = pc.utf8_trim_whitespace(raw_columns[j])
    raw_columns[j] = None
  release_freed_memory()
  return RawTable(path, header, columns, data_lines.astype(np.int64))


def release_freed_memory() -> None:
  """Gives the memory pyarrow's pool holds after frees back to the system.

  Its allocator (mimalloc) keeps freed blocks for reuse, and numpy's arrays never reuse them:
  at 200 MB of CSV the reader's buffers (then the table, once dropped) stayed in the process
  beside the float feature matrix, 1.9x the file on top of what was in use.
  """
  pa.default_memory_pool().release_unused()


def read_table(path: str, delimiter: str = ",", encoding: str = "utf-8-sig",
               multiline: bool = False, engine: str = "auto") -> RawTable:
  """Reads a CSV (optionally .gz) with a header row; DataErrors name the file and line.

  engine='auto': pyarrow with the checks of the module docstring, the strict reader for what
  they do not vouch for; 'strict': the strict reader only (bench/csv_load.py compares them).
  """
  if not path:
    raise DataError("data.path is empty: set it to a CSV file with a header row "
                    "(--config.data.path=...)")
  if not os.path.isfile(path):
    raise DataError(f"data.path={path!r}: no such file")
  if len(delimiter) != 1:
    raise DataError(f"data.delimiter={delimiter!r} must be one character (',' ';' '\\t' ...)")
  try:
    name = codecs.lookup(encoding).name
  except LookupError as e:
    raise DataError(f"data.encoding={encoding!r} is not a known text encoding (e.g. "
                    "'utf-8-sig', 'latin-1', 'cp1252')") from e
  fast = (engine == "auto" and not multiline and delimiter not in '"\r\n'
          and (name in FAST_ENCODINGS or name == "utf-8-sig"))
  if fast:
    try:
      return _read_fast(path, delimiter, name)
    except _NotFast:
      pass
    except OSError as e:
      raise DataError(f"{path}: unreadable CSV ({e})") from e
  return read_table_strict(path, delimiter, encoding, multiline)

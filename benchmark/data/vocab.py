"""Vocabularies as polars frames: counting, fuxictr's ordering, encoding and ``feature_vocab.json``.

fuxictr's ``Tokenizer.build_vocab`` sorts a Python dict of every distinct value by (-count, value),
keeps the values seen at least ``min_categr_count`` times (and not the fill value), sorts them by
value instead when they are not strings, and numbers them from 1 (0 = ``__PAD__``, the next free id
= ``__OOV__``). On real CTR data (Criteo's C3 has ten million distinct values) the dict, the sort and
the per-value encode dominate the build. Here the same rule runs on a two-column polars frame
``(value, id)``: counts come from polars group-bys (merged across batches when the input streams),
the ordering is a polars sort, encoding is a join, and ``feature_vocab.json`` is written from the
frame, so no Python object is made per distinct value. ``FrameTokenizer`` is a fuxictr ``Tokenizer``
whose vocabulary is that frame; its ``vocab`` dict is built only if some code asks for it.
"""

from __future__ import annotations

import json

import polars as pl
from fuxictr.preprocess.tokenizer import Tokenizer

VALUE, COUNT, ID = "value", "count", "id"
# pending batch counts of a column are merged once they hold this many rows and more than the merged part
MERGE_ROWS = 2_000_000


def frame_dtype_ok(dtype) -> bool:
    """Values whose vocabulary can live in a frame (and whose JSON keys polars writes as Python does)."""
    return dtype == pl.String or dtype.is_integer()


def count_values(values: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """``(value, count)`` of a one-column frame named ``value``, nulls dropped."""
    return values.lazy().drop_nulls().group_by(VALUE).agg(pl.len().cast(pl.Int64).alias(COUNT))


class CountMerger:
    """Exact value counts of several columns over a stream of batches, in bounded memory: each batch's
    counts are kept per column and merged into one frame when they outgrow the merged part, so the
    work is O(rows + distinct * log(batches)) and memory about twice the distinct values."""

    def __init__(self):
        self.merged: dict[str, pl.DataFrame] = {}
        self.pending: dict[str, list[pl.DataFrame]] = {}

    def add_batch(self, parts: dict[str, pl.LazyFrame]) -> None:
        names = list(parts)
        for name, counted in zip(names, pl.collect_all([parts[n] for n in names])):
            self.pending.setdefault(name, []).append(counted)
        self._merge(
            lambda name: (
                sum(p.height for p in self.pending[name])
                >= max(MERGE_ROWS, self.merged[name].height if name in self.merged else 0)
            )
        )

    def _merge(self, due) -> None:
        names = [n for n in self.pending if self.pending[n] and due(n)]
        queries = []
        single = [n for n in names if n not in self.merged and len(self.pending[n]) == 1]
        for name in single:  # one batch's counts are final as they are
            self.merged[name], self.pending[name] = self.pending[name][0], []
        names = [n for n in names if n not in single]
        for name in names:
            parts = self.pending[name] + ([self.merged[name]] if name in self.merged else [])
            queries.append(pl.concat(parts).lazy().group_by(VALUE).agg(pl.col(COUNT).sum()))
        for name, frame in zip(names, pl.collect_all(queries)):
            self.merged[name], self.pending[name] = frame, []

    def absorb(self, other: "CountMerger") -> None:
        """Take another merger's counts (e.g. of another file) as pending parts of this one."""
        for name, frame in other.result().items():
            self.pending.setdefault(name, []).append(frame)

    def result(self) -> dict[str, pl.DataFrame]:
        self._merge(lambda name: True)
        return dict(self.merged)


def kept_values(counts: pl.DataFrame, min_count: int, na_value) -> pl.DataFrame:
    """The ``(value, count)`` rows fuxictr's vocabulary keeps: seen ``min_count`` times, not the fill value."""
    keep = counts.filter(pl.col(COUNT) >= min_count)
    dtype = counts.schema[VALUE]
    if isinstance(na_value, str) and dtype == pl.String:
        keep = keep.filter(pl.col(VALUE) != na_value)
    elif isinstance(na_value, (int, float)) and not isinstance(na_value, bool) and dtype.is_numeric():
        keep = keep.filter(pl.col(VALUE) != na_value)
    return keep


def vocabulary(counts: pl.DataFrame, min_count: int, na_value) -> pl.DataFrame:
    """fuxictr's vocabulary rule on a ``(value, count)`` frame: ``(value, id)`` with ids 1..n."""
    keep = kept_values(counts, min_count, na_value)
    if counts.schema[VALUE] == pl.String:
        keep = keep.sort([COUNT, VALUE], descending=[True, False])
    else:  # fuxictr sorts non-string tokens by value
        keep = keep.sort(VALUE)
    return keep.select(VALUE, pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ID))


class FrameTokenizer(Tokenizer):
    """A fuxictr ``Tokenizer`` whose vocabulary is a ``(value, id)`` polars frame."""

    def __init__(self, frame: pl.DataFrame, **kwargs):
        super().__init__(**kwargs)
        self.frame = frame
        self.n_tokens = frame.height
        self._vocab = None

    @property
    def oov_idx(self) -> int:
        return self.n_tokens + 1

    def vocab_size(self) -> int:
        return self.n_tokens + 2

    @property
    def vocab(self) -> dict:
        """The vocabulary as fuxictr's dict, made on first use (fuxictr's own code paths, users)."""
        if self._vocab is None:
            self._vocab = dict(zip(self.frame[VALUE].to_list(), self.frame[ID].to_list()))
            self._vocab["__PAD__"] = 0
            self._vocab["__OOV__"] = self.oov_idx
        return self._vocab

    @vocab.setter
    def vocab(self, value):  # Tokenizer.__init__ assigns an empty dict
        self._vocab = value or None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_vocab"] = None
        return state

    def encode_category(self, series):
        values = pl.Series(VALUE, series)
        return map_ids(values.to_frame(), VALUE, self.frame, self.oov_idx)[VALUE].to_list()


def join_ids(
    query: pl.LazyFrame, name: str, vocab: pl.DataFrame, oov: int, dtype=pl.Int32, tag: str = ""
) -> pl.LazyFrame:
    """``query`` with column ``name`` replaced by its vocabulary ids (``oov`` for unseen and null): a left
    join on the ``(value, id)`` frame. ``tag`` keeps the helper columns of several joins in one query apart."""
    key, ident = f"__key{tag}", f"__id{tag}"
    return (
        query.with_columns(pl.col(name).cast(vocab.schema[VALUE], strict=False).alias(key))
        .join(vocab.lazy().rename({VALUE: key, ID: ident}), on=key, how="left", maintain_order="left")
        .with_columns(pl.col(ident).fill_null(oov).cast(dtype).alias(name))
        .drop(key, ident)
    )


def map_ids(frame: pl.DataFrame, name: str, vocab: pl.DataFrame, oov: int, dtype=pl.Int32) -> pl.DataFrame:
    """``frame`` with column ``name`` replaced by its vocabulary ids (``oov`` for unseen and null)."""
    return join_ids(frame.lazy(), name, vocab, oov, dtype).collect()


# --------------------------------------------------------------------------------------------------
# feature_vocab.json, byte-identical to fuxictr's json.dumps(vocab, indent=4)

_SAFE = r'^[ !#-\[\]-~]*$'  # printable ASCII without '"' and '\': json.dumps leaves these as they are


def _json_keys(values: pl.Series) -> pl.Series:
    text = values.cast(pl.String)
    if values.dtype == pl.String:
        unsafe = ~text.str.contains(_SAFE)
        if unsafe.any():  # rare: escape only those values the way json.dumps does
            idx = unsafe.arg_true()
            escaped = pl.Series([json.dumps(v)[1:-1] for v in text.gather(idx).to_list()], dtype=pl.String)
            text = text.scatter(idx, escaped)
    return text


def write_vocab_block(fd, name: str, tokenizer, last: bool) -> None:
    """One column's entry of ``feature_vocab.json``: PAD, the tokens in id order, OOV."""
    fd.write(f"    {json.dumps(name)}: {{\n")
    if isinstance(tokenizer, FrameTokenizer):
        fd.write('        "__PAD__": 0,\n')
        frame = tokenizer.frame
        if frame.height:
            lines = pl.DataFrame({"k": _json_keys(frame[VALUE]), "i": frame[ID]}).select(
                pl.format('        "{}": {},', "k", "i")
            )
            fd.write(lines.to_series().str.join("\n").item() + "\n")
        fd.write(f'        "__OOV__": {tokenizer.oov_idx}\n')
    else:
        items = sorted(tokenizer.vocab.items(), key=lambda x: x[1])
        body = json.dumps(dict(items), indent=4)
        fd.write("\n".join("    " + line for line in body.splitlines()[1:-1]) + "\n")
    fd.write("    }" + ("\n" if last else ",\n"))


def write_vocab_file(path: str, tokenizers: dict) -> None:
    """``feature_vocab.json`` for ``{column: tokenizer}`` in feature-map order."""
    with open(path, "w") as fd:
        fd.write("{\n" if tokenizers else "{}")
        names = list(tokenizers)
        for i, name in enumerate(names):
            write_vocab_block(fd, name, tokenizers[name], last=i == len(names) - 1)
        if tokenizers:
            fd.write("}")

"""Encoding fitted columns to ids: vectorised replacement of fuxictr's per-value ``transform``.

Plain categorical and meta columns are mapped through their frame vocabularies with one polars
query of joins (all columns at once, on every core); dict vocabularies (shared or pretrained
embeddings) with ``replace_strict``; numerics with the fitted scaler's arithmetic; ``^``-split
sequences with a vectorised numpy placement; hashed columns with FNV-1a (or the hex value).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from . import vocab as vc

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def fnv1a64(text: pl.Series) -> np.ndarray:
    """FNV-1a 64 of each string's UTF-8 bytes, then murmur3's fmix64 finaliser (stable, vectorised)."""
    import pyarrow as pa

    arr = text.cast(pl.String).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(lengths.max()) if n else 0):
            rows = np.flatnonzero(lengths > j)
            h[rows] = (h[rows] ^ data[starts[rows] + j].astype(np.uint64)) * _FNV_PRIME
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return h


class Encoder:
    """Vectorised replacement of ``FeatureProcessor.transform`` for one fitted processor."""

    def __init__(self, processor, specs: list[dict], labels: list[dict]):
        self.processor = processor
        self.labels = [lb["name"] for lb in labels]
        self.specs = {s["name"]: s for s in specs if s.get("active", True)}
        self.features = processor.feature_map.features
        self.hashed = {name: spec for name, spec in self.features.items() if spec.get("hash_buckets")}
        self._maps: dict[str, tuple[pl.Series, pl.Series, int]] = {}
        self._frames: dict[str, vc.FrameTokenizer] = {}
        for name, spec in self.features.items():
            tok = processor.processor_dict.get(name + "::tokenizer")
            if tok is None:
                continue
            if isinstance(tok, vc.FrameTokenizer):
                self._frames[name] = tok
                continue
            vocab = {k: v for k, v in tok.vocab.items() if k not in ("__PAD__", "__OOV__")}
            keys = list(vocab.keys())
            try:
                key_series = pl.Series("k", keys)
            except (TypeError, pl.exceptions.PolarsError):
                key_series = pl.Series("k", [str(k) for k in keys])
            self._maps[name] = (
                key_series,
                pl.Series("v", list(vocab.values()), dtype=pl.Int64),
                tok.vocab["__OOV__"],
            )

    def _map_expr(self, name: str, expr: pl.Expr, dtype) -> pl.Expr:
        keys, values, oov = self._maps[name]
        if dtype is not None and dtype != keys.dtype:
            if keys.dtype == pl.String:
                expr = expr.cast(pl.String)
            elif keys.dtype.is_numeric() and dtype.is_numeric():
                expr = expr.cast(keys.dtype)
            else:
                keys = keys.cast(dtype, strict=False)
        return expr.replace_strict(keys, values, default=oov, return_dtype=pl.Int64)

    def expressions(self, schema) -> list[pl.Expr]:
        exprs = [pl.col(lb).cast(pl.Float32) for lb in self.labels]
        for name, spec in self.features.items():
            kind = spec["type"]
            if name not in schema:
                continue
            if name in self.hashed or name in self._frames:
                exprs.append(pl.col(name))
            elif kind in ("categorical", "meta"):
                if name in self._maps:
                    out_type = pl.Int64 if kind == "meta" else pl.Int32
                    exprs.append(self._map_expr(name, pl.col(name), schema[name]).cast(out_type).alias(name))
                else:
                    exprs.append(pl.col(name).cast(pl.Int64).alias(name))
            elif kind == "numeric":
                norm = self.processor.processor_dict.get(name + "::normalizer")
                expr = pl.col(name).cast(pl.Float64)
                if norm is not None:
                    scaler = norm.normalizer.__self__
                    if hasattr(scaler, "mean_"):
                        expr = (expr - float(scaler.mean_[0])) / float(scaler.scale_[0])
                    else:
                        expr = expr * float(scaler.scale_[0]) + float(scaler.min_[0])
                exprs.append(expr.cast(pl.Float32).alias(name))
            elif kind == "sequence":
                exprs.append(pl.col(name))
        return exprs

    def sequence_array(self, name: str, column: pl.Series) -> np.ndarray:
        """``Tokenizer.encode_sequence`` + ``pad_sequences`` without a per-row Python loop."""
        tok = self.processor.processor_dict[name + "::tokenizer"]
        max_len = int(tok.max_len)
        n = len(column)
        lists = column.cast(pl.String).fill_null(tok._na_value).str.split(tok._splitter)
        lengths = lists.list.len().to_numpy().astype(np.int64)
        flat = lists.explode(empty_as_null=True)
        if name in self._frames:
            frame = self._frames[name]
            ids = vc.map_ids(flat.alias("t").to_frame(), "t", frame.frame, frame.oov_idx, pl.Int64)["t"]
        else:
            keys, values, oov = self._maps[name]
            ids = flat.replace_strict(keys, values, default=oov, return_dtype=pl.Int64)
        ids = pl.select(pl.when(flat == tok._na_value).then(0).otherwise(ids)).to_series().to_numpy()
        rows = np.repeat(np.arange(n), lengths)
        starts = np.cumsum(lengths) - lengths
        pos = np.arange(len(ids)) - np.repeat(starts, lengths)
        ln = np.repeat(lengths, lengths)
        out = np.zeros((n, max_len), dtype=np.int32)
        if tok.padding == "post":
            keep = pos < max_len
            out[rows[keep], pos[keep]] = ids[keep]
        else:
            keep = pos >= ln - max_len
            out[rows[keep], (max_len - ln + pos)[keep]] = ids[keep]
        return out

    def hashed_ids(self, name: str, column: pl.Series) -> np.ndarray:
        """``1 + h(value) mod N``; null and the column's fill_na value map to OOV (N + 1)."""
        spec = self.hashed[name]
        buckets = int(spec["hash_buckets"])
        na = self.specs.get(name, {}).get("fill_na", "")
        text = column.cast(pl.String)
        missing = text.is_null()
        if isinstance(na, str):
            missing = missing | (text == na).fill_null(False)
        if spec.get("hash_function") == "hex":
            ints = text.str.strip_chars().str.to_integer(base=16, strict=False).cast(pl.UInt64)
            missing = missing | ints.is_null()
            values = ints.fill_null(0).to_numpy().astype(np.uint64)
        else:
            values = fnv1a64(text.fill_null(""))
        ids = (values % np.uint64(buckets)).astype(np.int64) + 1
        ids[missing.to_numpy()] = buckets + 1
        return ids.astype(np.int32 if buckets + 2 < 2**31 else np.int64)

    def _join_ids(self, encoded: pl.DataFrame) -> pl.DataFrame:
        """Every frame-vocabulary column replaced by its ids, in one query of left joins."""
        names = [n for n in encoded.columns if n in self._frames and self.features[n]["type"] != "sequence"]
        if not names:
            return encoded
        query = encoded.lazy()
        for i, name in enumerate(names):
            tok = self._frames[name]
            out = pl.Int64 if self.features[name]["type"] == "meta" else pl.Int32
            query = vc.join_ids(query, name, tok.frame, tok.oov_idx, out, tag=str(i))
        return query.collect()

    def encode(self, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        encoded = self._join_ids(frame.select(self.expressions(frame.schema)))
        out = {}
        for name in encoded.columns:
            spec = self.features.get(name)
            if spec is not None and spec["type"] == "sequence":
                out[name] = self.sequence_array(name, encoded[name])
            elif name in self.hashed:
                out[name] = self.hashed_ids(name, encoded[name])
            else:
                out[name] = encoded[name].to_numpy()
        return out

"""fuxictr's ``FeatureProcessor`` with its statistics and vocabularies computed in polars.

``Processor`` keeps fuxictr's reading, ``preprocess`` functions (Criteo, Avazu, KKBox), numeric
normalisers and feature-map assembly, so ``feature_map.json``, ``feature_vocab.json`` and every id
equal what fuxictr assigns. What changes is the part that grows with the number of distinct values:
value counts are polars group-bys (one batch at a time when the build streams, merged by
``vocab.CountMerger``), and each plain categorical, sequence or meta column gets a
``vocab.FrameTokenizer`` instead of a Python dict. Columns whose vocabulary fuxictr merges or extends
(``share_embedding`` on either side, ``pretrained_emb``, ``remap: False``, float-valued tokens) keep
fuxictr's own dict tokenizer, fed from the same counts.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import polars as pl
from fuxictr.datasets import avazu, criteo, kkbox

from ..errors import CTRBenchError
from . import vocab as vc


class Processor(
    criteo.CustomizedFeatureProcessor, avazu.CustomizedFeatureProcessor, kkbox.CustomizedFeatureProcessor
):
    """fuxictr's FeatureProcessor with every ``preprocess`` function fuxictr ships (Criteo, Avazu,
    KKBox), polars statistics and frame vocabularies; an empty vocabulary is a clear error."""

    count_units = None  # per-file frames of a multi-file train split (given to ``fit``, counted in parallel)
    _train = None

    def __init__(
        self,
        feature_cols: list[dict],
        label_col: list[dict],
        dataset_id: str,
        out_dir: str,
        *,
        group_id=None,
        min_count: int = 1,
        where: str = "the dataset config",
        train_source: str = "the train split",
        streaming: bool = False,
        chunk_rows: int = 200_000,
        jobs: int = 1,
    ):
        """``out_dir`` receives feature_map.json, feature_vocab.json and feature_processor.pkl; ``where``
        and ``train_source`` are what errors name; ``streaming`` counts in batches of ``chunk_rows``
        rows (the raw files do not fit in memory); ``jobs`` files of a multi-file split at once."""
        super().__init__(
            feature_cols=feature_cols,
            label_col=label_col,
            dataset_id=dataset_id,
            data_root=os.path.dirname(out_dir),
            group_id=group_id,
        )
        self.data_dir = out_dir
        self.feature_map.data_dir = out_dir
        self.json_file = os.path.join(out_dir, "feature_map.json")
        self.pickle_file = os.path.join(out_dir, "feature_processor.pkl")
        self.vocab_file = os.path.join(out_dir, "feature_vocab.json")
        self.min_count = min_count
        self.where = where
        self.train_source = train_source
        self.streaming = streaming
        self.chunk_rows = chunk_rows
        self.jobs = jobs

    def fit(self, train_ddf, meta_ddf=None, count_units=None, **kwargs):
        """fuxictr's ``fit``; ``count_units`` are the per-file frames of a multi-file train split."""
        self.count_units = count_units
        return super().fit(train_ddf, meta_ddf=meta_ddf, **kwargs)

    def dlrm_log1p(self, col_name):
        """DLRM's dense transform: negative values -> 0, then log(x + 1)."""
        return pl.col(col_name).cast(pl.Float64).clip(lower_bound=0).log1p()

    # ---- which columns get a frame vocabulary

    def _dict_columns(self) -> set[str]:
        """Columns whose vocabulary fuxictr merges or extends in place: they keep its dict tokenizer."""
        names = set()
        for col in self.feature_cols:
            if col.get("share_embedding"):
                names.update((col["name"], col["share_embedding"]))
            if col.get("pretrained_emb") or col.get("remap", True) is False:
                names.add(col["name"])
        return names

    # ---- statistics

    def _collect_statistics(self, train_ddf, meta_ddf=None):
        self._train = train_ddf
        active = [c for c in self.feature_cols if c.get("active", True)]
        counted = [
            c
            for c in active
            if c["type"] in ("categorical", "sequence", "meta")
            and c.get("remap", True)
            and not c.get("hash_buckets")
            and c.get("category_processor") not in ("quantile_bucket", "hash_bucket")
        ]
        train_counted = [c for c in counted if c["type"] != "meta"]
        meta = [c for c in counted if c["type"] == "meta"]
        counts, max_len = self._count(train_ddf, train_counted)
        if meta:
            counts.update(self._count(meta_ddf if meta_ddf is not None else train_ddf, meta)[0])
        stats: dict[str, dict] = {}
        dict_columns = self._dict_columns()
        for col in counted:
            name = col["name"]
            frame = counts[name]
            self._check_not_empty(col, frame)
            if name in dict_columns or not vc.frame_dtype_ok(frame.schema[vc.VALUE]):
                values = dict(zip(frame[vc.VALUE].to_list(), frame[vc.COUNT].to_list()))
            else:
                values = frame
            stats[name] = {"value_counts": values}
            if col["type"] == "sequence":
                stats[name]["max_len"] = max_len.get(name, 0)
        stats.update(self._numeric_statistics(train_ddf, active))
        self._train = self.count_units = None
        return stats

    def _count(self, frame: pl.LazyFrame, cols: list[dict]) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
        """Value counts (and the longest sequence) of ``cols``: one query over an in-memory frame, one
        pass over the batches of a streamed one, or, for a split of several files (``count_units``),
        one pass per file, ``jobs`` files at a time, merged."""
        if not cols:
            return {}, {}
        units = self.count_units if self.streaming and self.count_units and frame is self._train else None
        if not units:
            return self._count_frame(frame, cols)
        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            results = list(pool.map(lambda unit: self._count_frame(unit, cols, merged=False), units))
        merger, max_len = vc.CountMerger(), {}
        for part, lengths in results:
            merger.absorb(part)
            for name, n in lengths.items():
                max_len[name] = max(max_len.get(name, 0), n)
        return merger.result(), max_len

    def _count_frame(self, frame: pl.LazyFrame, cols: list[dict], merged: bool = True):
        max_len: dict[str, int] = {}
        names = list(dict.fromkeys(c["name"] for c in cols))
        batches = (
            [frame.select(names)]
            if not self.streaming
            else frame.select(names).collect_batches(chunk_size=self.chunk_rows, maintain_order=False)
        )
        merger = vc.CountMerger()
        for batch in batches:
            parts = {}
            for col in cols:
                name = col["name"]
                if col["type"] == "sequence":
                    lists = pl.col(name).str.split(col.get("splitter", "^"))
                    if col.get("max_len", 0) == 0:
                        longest = batch.lazy().select(lists.list.len().max()).collect().item()
                        max_len[name] = max(max_len.get(name, 0), int(longest or 0))
                    parts[name] = vc.count_values(
                        batch.lazy().select(lists.alias(vc.VALUE)).explode(vc.VALUE)
                    )
                else:
                    parts[name] = vc.count_values(batch.lazy().select(pl.col(name).alias(vc.VALUE)))
            merger.add_batch(parts)
        return (merger.result() if merged else merger), max_len

    def _numeric_statistics(self, train_ddf: pl.LazyFrame, active: list[dict]) -> dict[str, dict]:
        """fuxictr's normaliser statistics with its own expressions, in one (streaming) query."""
        num = [c["name"] for c in active if c["type"] == "numeric" and "normalizer" in c]
        if not num:
            return {}
        exprs = []
        for name in num:
            col = pl.col(name).drop_nulls()
            exprs += [
                col.min().alias(f"{name}::min"),
                col.max().alias(f"{name}::max"),
                col.mean().alias(f"{name}::mean"),
                col.std(ddof=0).alias(f"{name}::std"),
                col.count().alias(f"{name}::count"),
            ]
        row = (
            train_ddf.select(exprs)
            .collect(engine="streaming" if self.streaming else "auto")
            .row(0, named=True)
        )
        return {
            name: {k: row[f"{name}::{k}"] for k in ("min", "max", "mean", "std", "count")} for name in num
        }

    def _check_not_empty(self, col: dict, counts: pl.DataFrame) -> None:
        if counts.height == 0:  # fuxictr fills missing values, so only a split without rows counts nothing
            raise CTRBenchError(
                f"{self.train_source} has no rows (the train split of {self.where}); give it data rows"
            )
        if col["type"] == "meta":
            return
        threshold = col.get("min_categr_count", self.min_count)
        if vc.kept_values(counts, 1, col.get("fill_na", "")).height == 0:
            raise CTRBenchError(
                f"categorical column '{col['name']}' is empty in every row of the train split "
                f"({self.train_source}, {self.where}); fill it in the raw file or drop the column "
                f"(active: False in its feature_cols entry)"
            )
        if vc.kept_values(counts, threshold, col.get("fill_na", "")).height == 0:
            raise CTRBenchError(
                f"categorical column '{col['name']}' in {self.where}: no value occurs "
                f"min_categr_count={threshold} times in train; lower min_categr_count for it "
                f"(in its feature_cols entry) or drop the column"
            )

    # ---- fitting: fuxictr's feature-map entries, frame tokenizers

    @staticmethod
    def _spec(col: dict, keys=("feature_encoder", "embedding_dim", "emb_output_dim")) -> dict:
        spec = {"source": col.get("source", ""), "type": col["type"]}
        for key in keys:
            if key in col:
                spec[key] = col[key]
        return spec

    def _frame_tokenizer(self, col, counts: pl.DataFrame, min_count: int, **kwargs) -> vc.FrameTokenizer:
        na = col.get("fill_na", "")
        return vc.FrameTokenizer(
            vc.vocabulary(counts, min_count, na), min_freq=min_count, na_value=na, remap=True, **kwargs
        )

    def fit_categorical_col(self, col, col_series=None, min_categr_count=1, num_buckets=10):
        buckets = int(col.get("hash_buckets") or 0)
        if buckets:
            spec = self._spec(col)
            spec.update(
                {
                    "padding_idx": 0,
                    "oov_idx": buckets + 1,
                    "vocab_size": buckets + 2,
                    "hash_buckets": buckets,
                    "hash_function": col.get("hash_function", "fnv1a"),
                }
            )
            self.feature_map.features[col["name"]] = spec
            return
        counts = col_series.get("value_counts") if isinstance(col_series, dict) else None
        if not isinstance(counts, pl.DataFrame):
            return super().fit_categorical_col(col, col_series, min_categr_count, num_buckets)
        tok = self._frame_tokenizer(col, counts, col.get("min_categr_count", min_categr_count))
        self.processor_dict[col["name"] + "::tokenizer"] = tok
        spec = self._spec(col)
        spec.update({"padding_idx": 0, "oov_idx": tok.oov_idx, "vocab_size": tok.vocab_size()})
        self.feature_map.features[col["name"]] = spec

    def fit_sequence_col(self, col, stats_dict=None, min_categr_count=1):
        counts = (stats_dict or {}).get("value_counts")
        if not isinstance(counts, pl.DataFrame):
            return super().fit_sequence_col(col, stats_dict, min_categr_count)
        tok = self._frame_tokenizer(
            col,
            counts,
            col.get("min_categr_count", min_categr_count),
            splitter=col.get("splitter", "^"),
            max_len=col.get("max_len", 0),
            padding=col.get("padding", "post"),
        )
        if tok.max_len == 0:
            tok.max_len = stats_dict.get("max_len", 0)
        self.processor_dict[col["name"] + "::tokenizer"] = tok
        spec = self._spec(col, ())
        encoder = col.get("feature_encoder", "layers.MaskedAveragePooling()")
        if encoder not in (None, "null", "None", "none"):
            spec["feature_encoder"] = encoder
        spec.update({k: col[k] for k in ("embedding_dim", "emb_output_dim") if k in col})
        spec.update(
            {"padding_idx": 0, "oov_idx": tok.oov_idx, "max_len": tok.max_len, "vocab_size": tok.vocab_size()}
        )
        self.feature_map.features[col["name"]] = spec

    def fit_meta_col(self, col, stats_dict):
        counts = (stats_dict or {}).get("value_counts")
        if not isinstance(counts, pl.DataFrame):
            return super().fit_meta_col(col, stats_dict)
        self.feature_map.features[col["name"]] = {"type": col["type"]}
        self.processor_dict[col["name"] + "::tokenizer"] = vc.FrameTokenizer(
            vc.vocabulary(counts, 1, ""), min_freq=1, remap=True
        )

    # ---- outputs

    def __getstate__(self):
        """The fitted state only: not the frames the statistics were computed from."""
        state = dict(self.__dict__)
        for key in ("_train", "count_units"):
            state.pop(key, None)
        return state

    def save_pickle(self, pickle_file):
        with open(pickle_file, "wb") as fd:
            pickle.dump(self, fd, protocol=pickle.HIGHEST_PROTOCOL)

    def save_vocab(self, vocab_file):
        """fuxictr's feature_vocab.json; a hashed column has no vocabulary, only PAD and OOV."""
        tokenizers = {}
        for name, spec in self.feature_map.features.items():
            if spec["type"] not in ("categorical", "sequence"):
                continue
            if spec.get("hash_buckets"):
                tokenizers[name] = _Fixed({"__PAD__": 0, "__OOV__": spec["hash_buckets"] + 1})
            else:
                tokenizers[name] = self.processor_dict[name + "::tokenizer"]
        vc.write_vocab_file(vocab_file, tokenizers)


class _Fixed:
    """A vocabulary given as a dict (hashed columns: PAD and OOV only)."""

    def __init__(self, vocab: dict):
        self.vocab = vocab

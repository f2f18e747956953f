"""Known facts about the public CTR datasets: split files, row counts, MD5s, headers, sources, recipes.

Data only. The dataset configs (``config/dataset_config/*.yaml``) say how each ``dataset_id`` is
*processed*; this module says what its *files* are (published BARS/reczoo MD5s and row counts, the
header each CSV must have), where the originals can be downloaded, and which raw source ``ctrbench
data prepare`` turns into the split. ``benchmark/data/prepare.py`` holds the code that uses it.

Sources of the numbers: the reczoo/Datasets and reczoo/BARS READMEs (md5sum lines, split sizes),
the five papers' dataset sections and tables (IBNet, TF4CTR, DLF, SFG, MaskFusion) and the GroupLens / Kaggle / Criteo AI Lab
pages for the raw data.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS_ORDER = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitFile:
    """One file of a split. ``path`` is relative to the data root (a folder for per-day layouts)."""

    split: str
    path: str
    rows: int | None = None  # data rows, header excluded
    md5: str | None = None  # published checksum of the whole file, when one exists


@dataclass(frozen=True)
class SplitSet:
    """A set of split files as published (or as ``prepare`` writes them)."""

    name: str
    files: tuple[SplitFile, ...]
    header: tuple[str, ...]
    ratio: str
    download: str
    line_end: str | None = None  # "crlf" / "lf" where known; MD5s depend on it
    notes: str = ""

    def file(self, split: str) -> SplitFile | None:
        return next((f for f in self.files if f.split == split), None)


@dataclass(frozen=True)
class RawSource:
    """A raw download that ``ctrbench data prepare`` can turn into a split set."""

    kind: str
    description: str
    files: tuple[str, ...]  # what --from must contain (a file or a folder with these names)
    download: str
    produces: str  # SplitSet name(s) it yields
    recipe: str
    rows: int | None = None
    gz_ok: bool = False  # whether .gz variants of the files are read as well


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset_id: which split set its files are and how the paper/benchmark processed it."""

    dataset_id: str
    split_set: str
    config_file: str
    processing: str
    raw: str | None = None  # RawSource.kind, when it can be prepared from raw data
    papers: tuple[str, ...] = ()
    splits: tuple[str, ...] = SPLITS_ORDER  # the files this id reads
    notes: str = ""


def _files(folder: str, rows=(None, None, None), md5=(None, None, None), ext="csv") -> tuple[SplitFile, ...]:
    return tuple(
        SplitFile(split, f"{folder}/{split}.{ext}", r, m) for split, r, m in zip(SPLITS_ORDER, rows, md5)
    )


CRITEO_COLUMNS = tuple([f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])
AVAZU_RAW_COLUMNS = (
    "id",
    "click",
    "hour",
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    "C14",
    "C15",
    "C16",
    "C17",
    "C18",
    "C19",
    "C20",
    "C21",
)
FRAPPE_COLUMNS = (
    "user",
    "item",
    "daytime",
    "weekday",
    "isweekend",
    "homework",
    "cost",
    "weather",
    "country",
    "city",
)
MOVIELENS_COLUMNS = ("user_id", "item_id", "tag_id")
KKBOX_X1_COLUMNS = (
    "label",
    "msno",
    "song_id",
    "source_system_tab",
    "source_screen_name",
    "source_type",
    "city",
    "bd",
    "gender",
    "registered_via",
    "registration_init_time",
    "expiration_date",
    "song_length",
    "genre_ids",
    "artist_name",
    "composer",
    "lyricist",
    "language",
    "name",
    "isrc",
)
ML1M_COLUMNS = (
    "label",
    "UserID",
    "MovieID",
    "Rating",
    "Timestamp",
    "Gender",
    "Age",
    "Occupation",
    "Zipcode",
    "Title",
    "Genres",
)
TERABYTE_TRAIN_DAYS = tuple(range(23))  # day_0 .. day_22 train; day_23 -> test (first half) / valid

HF = "https://huggingface.co/datasets/reczoo"

SPLIT_SETS: dict[str, SplitSet] = {
    s.name: s
    for s in (
        SplitSet(
            "Frappe_x1",
            _files(
                "Frappe_x1",
                (202_027, 57_722, 28_860),
                (
                    "ba7306e6c4fc19dd2cd84f2f0596d158",
                    "88d51bf2173505436d3a8f78f2a59da8",
                    "3470f6d32713dc5f7715f198ca7c612a",
                ),
            ),
            ("label",) + FRAPPE_COLUMNS,
            "7:2:1 (NFM's random split, no seed: the files define it)",
            f"{HF}/Frappe_x1 (BARS Frappe_x1: train.csv, valid.csv, test.csv)",
            line_end="crlf",
            notes="values are AFN's global feature indices (user 0-956, item 957-5038, ..., city 5149-5381)",
        ),
        SplitSet(
            "MovielensLatest_x1",
            _files(
                "MovielensLatest_x1",
                (1_404_801, 401_373, 200_686),
                (
                    "efc8bceeaa0e895d566470fc99f3f271",
                    "e1930223a5026e910ed5a48687de8af1",
                    "54e8c6baff2e059fe067fb9b69e692d0",
                ),
            ),
            ("label",) + MOVIELENS_COLUMNS,
            "7:2:1 (NFM's ml-tag split)",
            f"{HF}/MovielensLatest_x1 (BARS MovielensLatest_x1: train.csv, valid.csv, test.csv)",
            line_end="crlf",
            notes="CRLF assumed from the Frappe files made by the same conversion",
        ),
        SplitSet(
            "Criteo_x1",
            _files(
                "Criteo_x1",
                (33_003_326, 8_250_124, 4_587_167),
                (
                    "30b89c1c7213013b92df52ec44f52dc5",
                    "f73c71fb3c4f66b6ebdfa032646bea72",
                    "2c48b26e84c04a69b948082edae46f8c",
                ),
            ),
            ("label",) + CRITEO_COLUMNS,
            "7:2:1 (AFN's random split)",
            f"{HF}/Criteo_x1 (BARS Criteo_x1: train.csv, valid.csv, test.csv)",
            notes="I1-I13 are AFN-normalised floats, C1-C26 AFN integer ids",
        ),
        SplitSet(
            "Avazu_x1",
            _files(
                "Avazu_x1",
                (28_300_276, 4_042_897, 8_085_794),
                (
                    "f1114a07aea9e996842c71648e0f6395",
                    "d9568f246357d156c4b8030fadb8b623",
                    "9e2fe9c48705c9315ae7a0953eb57acf",
                ),
            ),
            ("label",) + tuple(f"feat_{i}" for i in range(1, 23)),
            "7:1:2 (AFN's random split)",
            f"{HF}/Avazu_x1 (BARS Avazu_x1: train.csv, valid.csv, test.csv)",
            notes="all 22 fields are AFN integer ids",
        ),
        SplitSet(
            "Criteo_x4",
            _files(
                "Criteo_x4",
                (36_672_493, 4_584_062, 4_584_062),
                (
                    "4a53bb7cbc0e4ee25f9d6a73ed824b1a",
                    "fba5428b22895016e790e2dec623cb56",
                    "cfc37da0d75c4d2d8778e76997df2976",
                ),
            ),
            ("Label",) + CRITEO_COLUMNS,
            "8:1:1 (AutoInt's stratified 10-fold split, seed 2018)",
            f"{HF}/Criteo_x4 (BARS Criteo_x4: train.csv, valid.csv, test.csv)",
            line_end="lf",
            notes="raw Kaggle values: integer I1-I13, 8-hex C1-C26, empty when missing",
        ),
        SplitSet(
            "Avazu_x4",
            _files(
                "Avazu_x4",
                (32_343_172, 4_042_897, 4_042_898),
                (
                    "de3a27264cdabf66adf09df82328ccaa",
                    "33232931d84d6452d3f956e936cab2c9",
                    "3ebb774a9ca74d05919b84a3d402986d",
                ),
            ),
            AVAZU_RAW_COLUMNS,
            "8:1:1 (AutoInt's stratified 10-fold split, seed 2018)",
            f"{HF}/Avazu_x4 (BARS Avazu_x4: train.csv, valid.csv, test.csv)",
            line_end="lf",
            notes="raw Kaggle rows; hour is YYMMDDHH",
        ),
        SplitSet(
            "KKBox_x1",
            _files(
                "KKBox_x1",
                (5_901_932, 737_743, 737_743),
                (
                    "195b1ae8fc2d9267d7c8656c07ea1304",
                    "398e97ac139611a09bd61a58e4240a3e",
                    "8c5f7add05a6f5258b6b3bcc00ba640b",
                ),
            ),
            KKBOX_X1_COLUMNS,
            "8:1:1 (stratified 10-fold split, seed 2018)",
            f"{HF}/KKBox_x1 (BARS KKBox_x1: train.csv, valid.csv, test.csv)",
            notes="Kaggle train.csv joined with members/songs/song_extra_info; msno, song_id, persons and "
            "song names mapped to integer ids; genre_ids and artist_name space-separated lists",
        ),
        SplitSet(
            "ML_1M",
            _files("ML_1M", (800_167, 100_021, 100_021)),
            ML1M_COLUMNS,
            "8:1:1 (random permutation, seed 2023; all 1,000,209 ratings)",
            "https://files.grouplens.org/datasets/movielens/ml-1m.zip (GroupLens MovieLens 1M; "
            "build the split with 'ctrbench data prepare ML_1M --from ml-1m/')",
            line_end="lf",
            notes="no published split: this layout is ctrbench's own (TF4CTR's protocol); "
            "label = 1 iff rating >= 4",
        ),
        SplitSet(
            "Criteo_Terabyte",
            (
                SplitFile("train", "Criteo_Terabyte/train"),
                SplitFile("valid", "Criteo_Terabyte/valid.csv"),
                SplitFile("test", "Criteo_Terabyte/test.csv"),
            ),
            ("label",) + CRITEO_COLUMNS,
            "days 0-22 train; day 23: first half test, second half valid (DLRM). With some of the days: "
            "day 23 (else the last day present) halved the same way, the others train; one day alone: "
            "its first 90% of lines train, the last 10% halved into test then valid",
            "https://ailab.criteo.com/download-criteo-1tb-click-logs-dataset/ (Criteo 1TB click logs "
            "day_0..day_23; build the split with 'ctrbench data prepare Criteo_Terabyte --from DIR')",
            line_end="lf",
            notes="train/ holds one CSV per day (day_00.csv .. day_22.csv); about 4.37B rows",
        ),
    )
}

RAW_SOURCES: dict[str, RawSource] = {
    r.kind: r
    for r in (
        RawSource(
            "criteo_kaggle",
            "Kaggle Criteo Display Advertising Challenge train.txt (TSV, no header: label, I1-I13, C1-C26)",
            ("train.txt",),
            "https://ailab.criteo.com/ressources/ (criteo-research-kaggle-display-advertising-challenge-"
            "dataset.tar.gz; also https://www.kaggle.com/c/criteo-display-ad-challenge)",
            "Criteo_x4",
            "stratified 10-fold split of the rows (scikit-learn 0.19 StratifiedKFold semantics, shuffle, "
            "seed 2018): fold 0 -> test, fold 1 -> valid, folds 2-9 -> train (fold by fold, file order "
            "within a fold); tabs become commas under the header Label,I1..I13,C1..C26",
            rows=45_840_617,
            gz_ok=True,
        ),
        RawSource(
            "avazu_kaggle",
            "Kaggle Avazu CTR Prediction train (CSV with header id,click,hour,...)",
            ("train.csv",),
            "https://www.kaggle.com/c/avazu-ctr-prediction/data (train.gz)",
            "Avazu_x4",
            "stratified 10-fold split of the rows on click (seed 2018): fold 0 -> test, fold 1 -> valid, "
            "folds 2-9 -> train; rows are copied unchanged",
            rows=40_428_967,
            gz_ok=True,
        ),
        RawSource(
            "kkbox_kaggle",
            "Kaggle WSDM KKBox Music Recommendation train.csv, songs.csv, members.csv, song_extra_info.csv",
            ("train.csv", "songs.csv", "members.csv", "song_extra_info.csv"),
            "https://www.kaggle.com/c/kkbox-music-recommendation-challenge/data",
            "KKBox_x1",
            "train left-joined with members, songs and song_extra_info; label = target > 0; msno and song_id "
            "mapped to 1-based ids over the sorted union of ids; artist_name/composer/lyricist split on "
            "| \\ / & ; into persons mapped to sorted 1-based ids (space-separated); genre_ids '|' -> ' '; "
            "language as an integer string; song name -> sorted 1-based id; stratified 10-fold split "
            "(seed 2018) as for Criteo_x4",
            rows=7_377_418,
        ),
        RawSource(
            "ml1m_grouplens",
            "GroupLens MovieLens 1M ratings.dat, users.dat, movies.dat ('::'-separated)",
            ("ratings.dat", "users.dat", "movies.dat"),
            "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
            "ML_1M",
            "ratings joined with users and movies; label = 1 iff Rating >= 4 (all ratings kept); rows "
            "assigned by a seeded permutation (seed 2023): round(0.1 n) test, round(0.1 n) valid, the rest "
            "train (800,167 / 100,021 / 100,021), file order kept within each split",
            rows=1_000_209,
        ),
        RawSource(
            "criteo_terabyte",
            "Criteo 1TB click logs day_0 .. day_23 (TSV, no header, 40 columns; .gz ok)",
            tuple(f"day_{d}" for d in range(24)),
            "https://ailab.criteo.com/download-criteo-1tb-click-logs-dataset/",
            "Criteo_Terabyte",
            "days 0-22 -> train/day_NN.csv (optionally dropping a seeded fraction of negatives, DLRM's "
            "--data-sub-sample-rate), day 23 -> test = first ceil(n/2) rows, valid = the rest (DLRM); "
            "tabs become commas under the header label,I1..I13,C1..C26",
            gz_ok=True,
        ),
        RawSource(
            "afn_libsvm",
            "AFN's libsvm files (label idx:1 ...) or NFM's libfm files (labels -1/1)",
            ("train.libsvm", "valid.libsvm", "test.libsvm"),
            "https://github.com/WeiyuCheng/AFN-AAAI-20 (data/frappe, data/movielens) or "
            "https://github.com/hexiangnan/neural_factorization_machine (data/frappe, data/ml-tag)",
            "Frappe_x1, MovielensLatest_x1",
            "BARS' conversion: label kept (-1 -> 0 for libfm), each idx:1 token -> idx, header line, CRLF "
            "line ends; the result has the BARS MD5s (checked on Frappe_x1 valid/test)",
        ),
    )
}

DATASETS: dict[str, DatasetInfo] = {
    d.dataset_id: d
    for d in (
        DatasetInfo(
            "Criteo_x1",
            "Criteo_x1",
            "criteo.yaml",
            "BARS Criteo_x1: I1-I13 numeric as given, C1-C26 categorical, min_categr_count 1",
            papers=("DLF", "SFG"),
        ),
        DatasetInfo(
            "Criteo_x4_001",
            "Criteo_x4",
            "criteo.yaml",
            "BARS Criteo_x4_001: min_categr_count 10, I1-I13 bucketed floor(ln(x)^2) if x > 2 "
            "(NA -> 0) as categoricals (embedding_dim 16 in BARS)",
            raw="criteo_kaggle",
            papers=("TF4CTR",),
        ),
        DatasetInfo(
            "Criteo_x4_002",
            "Criteo_x4",
            "criteo.yaml",
            "BARS Criteo_x4_002: min_categr_count 2, same I1-I13 bucketing (embedding_dim 40 in BARS)",
            raw="criteo_kaggle",
        ),
        DatasetInfo(
            "Criteo_x4_ibnet",
            "Criteo_x4",
            "criteo.yaml",
            "IBNet Table IV: min_categr_count 2 and the floor(ln(x)^2) bucketing "
            "(= Criteo_x4_002 processing; a separate id so its builds and records stay apart)",
            raw="criteo_kaggle",
            papers=("IBNet",),
        ),
        DatasetInfo(
            "Avazu_x1",
            "Avazu_x1",
            "avazu.yaml",
            "BARS Avazu_x1: feat_1-feat_22 categorical, min_categr_count 1",
            papers=("DLF",),
        ),
        DatasetInfo(
            "Avazu_x4_001",
            "Avazu_x4",
            "avazu.yaml",
            "BARS Avazu_x4_001: id dropped, hour -> hour-of-day/weekday/weekend, min_categr_count 2 "
            "(embedding_dim 16 in BARS)",
            raw="avazu_kaggle",
            papers=("IBNet", "SFG", "MaskFusion"),
        ),
        DatasetInfo(
            "Avazu_x4_002",
            "Avazu_x4",
            "avazu.yaml",
            "BARS Avazu_x4_002: id dropped, hour -> hour-of-day/weekday/weekend, min_categr_count 1 "
            "(embedding_dim 40 in BARS)",
            raw="avazu_kaggle",
        ),
        DatasetInfo(
            "MovielensLatest_x1",
            "MovielensLatest_x1",
            "movielens.yaml",
            "user_id, item_id, tag_id categorical, min_categr_count 2 (IBNet/TF4CTR; BARS uses 1)",
            raw="afn_libsvm",
            papers=("IBNet", "TF4CTR", "DLF"),
        ),
        DatasetInfo(
            "Frappe_x1",
            "Frappe_x1",
            "frappe.yaml",
            "10 categorical fields, min_categr_count 2 (IBNet/TF4CTR; BARS uses 1)",
            raw="afn_libsvm",
            papers=("IBNet", "TF4CTR", "DLF"),
        ),
        DatasetInfo(
            "frappe_x1_partial",
            "Frappe_x1",
            "frappe.yaml",
            "real-data benchmark: Frappe_x1 valid.csv split 90/10 (seed 2023) into train/valid, "
            "test.csv as test; not comparable to BARS numbers",
            splits=("valid", "test"),
            notes="reads the valid/test files that ship in ../shared/data/Frappe_x1",
        ),
        DatasetInfo(
            "KKBox_x1",
            "KKBox_x1",
            "kkbox.yaml",
            "9 categoricals + genre_ids/artist_name sequences (max_len 3) + isrc -> country code + "
            "bd -> age bucket, min_categr_count 10 (BARS; TF4CTR used 2)",
            raw="kkbox_kaggle",
            papers=("TF4CTR",),
        ),
        DatasetInfo(
            "ML_1M",
            "ML_1M",
            "ml1m.yaml",
            "UserID, Gender, Age, Occupation, MovieID categorical, min_categr_count 2 (TF4CTR)",
            raw="ml1m_grouplens",
            papers=("TF4CTR",),
        ),
        DatasetInfo(
            "Criteo_Terabyte",
            "Criteo_Terabyte",
            "terabyte.yaml",
            "DLRM protocol: I1-I13 max(x, 0) then log(x + 1), C1-C26 hashed into 10M buckets, "
            "streamed day by day in data_block_size blocks",
            raw="criteo_terabyte",
            papers=("MaskFusion",),
        ),
    )
}

# Which raw sources can produce a dataset id's split set besides DatasetInfo.raw (afn_libsvm is
# also the route for MovielensLatest_x1; the header it writes depends on the split set).
LIBSVM_HEADERS: dict[str, tuple[str, ...]] = {
    "Frappe_x1": ("label",) + FRAPPE_COLUMNS,
    "MovielensLatest_x1": ("label",) + MOVIELENS_COLUMNS,
}
# NFM's libfm file names for the same splits.
LIBFM_NAMES = {"Frappe_x1": "frappe", "MovielensLatest_x1": "ml-tag"}


def match_paths(paths: dict[str, str | None]) -> tuple[SplitSet | None, dict[str, str]]:
    """The split set whose files a dataset config reads (matched by path suffix, e.g. a config that
    trains on ``Frappe_x1/valid.csv``), and registry split -> that config path."""
    for split_set in SPLIT_SETS.values():
        found = {}
        for spec in split_set.files:
            for path in paths.values():
                if path and path.replace("\\", "/").rstrip("/").endswith("/" + spec.path):
                    found[spec.split] = path
        if found:
            return split_set, found
    return None, {}


def dataset(dataset_id: str) -> DatasetInfo | None:
    return DATASETS.get(dataset_id)


def split_set(name: str) -> SplitSet:
    return SPLIT_SETS[name]


def raw_source(kind: str) -> RawSource:
    return RAW_SOURCES[kind]


def resolve(name: str) -> tuple[DatasetInfo | None, SplitSet | None]:
    """A dataset_id or a split-set name -> (its DatasetInfo or None, its SplitSet or None)."""
    info = DATASETS.get(name)
    if info is not None:
        return info, SPLIT_SETS[info.split_set]
    if name in SPLIT_SETS:
        owner = next((d for d in DATASETS.values() if d.split_set == name and d.raw), None)
        return owner, SPLIT_SETS[name]
    return None, None


__all__ = [
    "SplitFile",
    "SplitSet",
    "RawSource",
    "DatasetInfo",
    "SPLIT_SETS",
    "RAW_SOURCES",
    "DATASETS",
    "LIBSVM_HEADERS",
    "LIBFM_NAMES",
    "CRITEO_COLUMNS",
    "AVAZU_RAW_COLUMNS",
    "KKBOX_X1_COLUMNS",
    "ML1M_COLUMNS",
    "TERABYTE_TRAIN_DAYS",
    "match_paths",
    "dataset",
    "split_set",
    "raw_source",
    "resolve",
]

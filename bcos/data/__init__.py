"""The data layer, without Lightning: locating named, local and Hub datasets (:mod:`.sources`), checking,
cleaning and tokenising their splits with a disk cache (:mod:`.processing`), padding batches (:mod:`.batches`), and
one split for an evaluation (:mod:`.splits`). The training data modules and the evaluation commands both use it.
"""
from .batches import Examples, PadCollator, padding_id
from .processing import PrepareConfig, load_cached, prepare_cached, read_meta, resolve_labels
from .sources import DATA_DIR_ENV, HUB_DATASETS, resolve_source
from .splits import Columns, Split, read_split, tokenize_split

__all__ = ["DATA_DIR_ENV", "HUB_DATASETS", "Columns", "Examples", "PadCollator", "PrepareConfig", "Split",
           "load_cached", "padding_id", "prepare_cached", "read_meta", "read_split", "resolve_labels",
           "resolve_source", "tokenize_split"]

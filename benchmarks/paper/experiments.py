"""The paper's experiments (issue 11) as cells: which models each trains and how each is evaluated.

A *cell* is one row group of a table: a data set, the B-cos model (a ``SequenceClassifier`` option set, trained by
``train.py fit`` from the budget's config for the data set), optionally the conventional model, and the options of
``python -m bcos.evaluate``. Models are shared between cells and experiments by their key (the full-recipe
HateXplain model appears in the faithfulness table, the B sweep and the ablation) and trained once.

Everything that sets the scale is in the *budget* (a YAML file, ``benchmarks/paper/budgets/``): the training
config per data set and kind, the overrides (steps), the evaluation split and sample size, the methods, and which
cells to run. The same cells run at the paper's scale with another budget. The decoder experiment has one cell per
minimal-pair suite, both on the same two decoders (B-cos and conventional, the budget's ``decoders`` configs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightning_modules.sequence_classifier import BCOS_RECIPE

#: the B values of the sweep (the paper's, Table 4)
B_VALUES = (1.0, 1.25, 1.5, 2.0, 2.5)
#: the ablation: each row removes one B-cos adaptation from the full recipe
ABLATIONS = {
    "full B-cos": {},
    "biases kept": {"remove_biases": False},
    "cross-entropy instead of BCE": {"loss": "ce"},
    "head activations kept": {"keep_head_activations": True},
    "b = 1 (no alignment pressure)": {"b": 1.0},
}
EXPERIMENTS = ("faithfulness", "b_sweep", "ablation", "decoders")
#: the minimal-pair suites of the decoder experiment and the rows read per subset file (None: all)
DECODER_SUITES = {"blimp": 100, "ioi": None}


@dataclass(frozen=True)
class TrainedModel:
    """A model to train: ``kind`` (``bcos`` or ``conventional``) on ``dataset`` with ``SequenceClassifier``
    ``options`` over the budget's config; ``task`` ``lm``: a decoder from the budget's ``decoders`` configs
    (``dataset`` then only names it)."""

    dataset: str
    kind: str
    options: tuple[tuple[str, Any], ...] = ()
    task: str = "classification"

    @property
    def key(self) -> str:
        """A folder name that identifies the model, e.g. ``hatexplain-bcos-b=2.0``."""
        suffix = "".join(f"-{name}={value}" for name, value in self.options)
        return f"{self.dataset}-{self.kind}{suffix}"


@dataclass(frozen=True)
class Cell:
    """One evaluation: ``bcos`` (and ``conventional``) on ``dataset``, with extra ``bcos.evaluate`` flags."""

    experiment: str
    name: str
    dataset: str
    bcos: TrainedModel
    conventional: TrainedModel | None = None
    flags: tuple[str, ...] = field(default=())

    @property
    def models(self) -> list[TrainedModel]:
        return [model for model in (self.bcos, self.conventional) if model is not None]


def bcos_model(dataset: str, **options: Any) -> TrainedModel:
    """The B-cos model with ``options`` over the recipe (options equal to the recipe's are dropped, so that the
    recipe's model has one key)."""
    changed = {name: value for name, value in options.items() if name not in BCOS_RECIPE or BCOS_RECIPE[name] != value}
    return TrainedModel(dataset, "bcos", tuple(sorted(changed.items())))


def cells(experiment: str, budget: dict[str, Any]) -> list[Cell]:
    """The cells of ``experiment`` that ``budget`` selects (its ``<experiment>`` entry: ``datasets`` for the
    faithfulness table; ``dataset`` and ``b_values`` for the sweep; ``dataset`` and ``ablations`` for the ablation;
    the faithfulness table's post-hoc methods are ``posthoc_methods``, also run on the B-cos model unless
    ``posthoc_on_bcos: false``; the decoders' ``suites``: rows per subset file by suite, default
    :data:`DECODER_SUITES`)."""
    selection = budget.get(experiment) or {}
    if experiment == "decoders":
        bcos, conventional = (TrainedModel("lm", kind, task="lm") for kind in ("bcos", "conventional"))
        return [Cell(experiment, suite, suite, bcos, conventional,
                     ("--max-examples", str(rows)) if rows is not None else ())
                for suite, rows in (selection.get("suites") or DECODER_SUITES).items()]
    if experiment == "faithfulness":
        flags = ("--methods", ",".join(["bcos", *budget["posthoc_methods"]]))
        if budget.get("posthoc_on_bcos", True):
            flags += ("--posthoc-on-bcos",)
        return [Cell(experiment, dataset, dataset, bcos_model(dataset), TrainedModel(dataset, "conventional"), flags)
                for dataset in selection.get("datasets", ["sst2", "ag_news", "imdb", "hatexplain"])]
    dataset = selection.get("dataset", "hatexplain")
    if experiment == "b_sweep":
        values = selection.get("b_values", list(B_VALUES))
        return [Cell(experiment, f"b = {b}", dataset, bcos_model(dataset, b=float(b))) for b in values]
    if experiment == "ablation":
        names = selection.get("ablations", list(ABLATIONS))
        unknown = sorted(set(names) - set(ABLATIONS))
        if unknown:
            raise ValueError(f"unknown ablation {unknown[0]!r} in the budget; known: {', '.join(ABLATIONS)}")
        return [Cell(experiment, name, dataset, bcos_model(dataset, **ABLATIONS[name])) for name in names]
    raise ValueError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")

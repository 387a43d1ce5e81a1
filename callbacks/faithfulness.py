"""Faithfulness of explanations on every validation epoch: scalars, a custom-scalars layout and heatmaps in
TensorBoard."""
from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import nn

from bcos import Model, load, load_tokenizer
from bcos.evaluate import SCORES, Examples, MethodResult, MetricSettings, predictions, score_method, seqpg_instances
from bcos.explain import EXPLAINERS, explainer_for
from bcos.explain.registry import check_explainer_params
from bcos.metrics import DEFAULT_FRACTIONS
from bcos.viz import TokenHeatmap, heatmap_figure

REFERENCE_SUFFIX = "@reference"


@contextmanager
def isolated_evaluation(module: nn.Module) -> Iterator[None]:
    """Run a block in eval mode with gradients on (also inside Lightning's inference mode), then restore every
    submodule's train/eval mode and the torch (CPU and initialised CUDA), Python and NumPy random states."""
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode(False), torch.enable_grad():
        module.eval()
        try:
            yield
        finally:
            for submodule, training in modes:
                submodule.training = training
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class FaithfulnessCallback(Callback):
    """Explains a fixed probe subset of the validation set after every ``every_n_validations``-th validation run and
    logs how faithful the explanations are.

    Logged (rank zero): ``faithfulness/<metric>/<method>`` (comprehensiveness and sufficiency as AOPC x 100, seqpg,
    the explanation ``entropy`` and ``special_token_share``, and ``plausibility_{auprc,token_f1,iou_f1}`` when the
    probe has human rationales), ``explain_time/<method>`` (seconds per probe example),
    ``predictions/class_<k>/{predicted,labelled}`` (the share of probe examples the model predicts as class k, and
    the share labelled k; ``predicted@reference`` for the reference model), once a TensorBoard custom-scalars
    layout with one chart per metric holding every method and one per class, and ``heatmaps/example_<i>``
    figures. Post-hoc methods on the reference model are logged as ``<method>@reference``.

    The LightningModule must keep its transformers classifier in ``.model``; probabilities for the metrics are
    ``softmax(logits · module.logit_scale)`` (scale 1 when the module has none). Every method explains the
    predicted class. Under DDP only rank zero evaluates (the whole probe, so no example is duplicated or
    missing) while the other ranks wait at a barrier. The evaluation restores train/eval modes and random states,
    so training goes on exactly as without the callback. Skipped during the sanity check.

    Args:
        methods: explainers (see ``bcos.explain.EXPLAINERS``); "bcos" runs only when the model is a B-cos model.
        method_params: constructor parameters by method, e.g. ``{"integrated_gradients": {"n_steps": 20}}``
            (checked here: ``bcos.explain.registry.check_explainer_params``).
        reference_checkpoint: a conventional model of the same task and tokenizer (Hugging Face folder or
            Lightning ``.ckpt``); the post-hoc methods explain it too (computed once: it does not change).
        probe_size: number of validation examples explained.
        probe_seed: None: the first ``probe_size`` examples of the validation dataset; an int: a sample drawn
            with this seed. The same examples every time.
        metrics: of "comprehensiveness", "sufficiency", "seqpg", "entropy", "special_token_share" ("plausibility"
            is added when the validation data has rationales).
        fractions: erasure fractions of comprehensiveness and sufficiency.
        seqpg_segment_length, seqpg_segments, seqpg_instances: pointing-game instances built from the probe
            (segments of exactly this many tokens; ``seqpg_instances`` caps their number). Without any instance
            (e.g. a model that predicts one class only) seqpg is not logged.
        heatmaps: number of probe examples drawn as heatmap figures.
        every_n_validations: evaluate on every n-th validation run (validation runs triggered by
            ``val_check_interval`` count too).
        every_n_epochs: deprecated name of ``every_n_validations``.
        explain_batch_size: probe examples per explainer call.
    """

    def __init__(
        self,
        methods: Sequence[str] = ("bcos", "integrated_gradients", "kernel_shap", "lime"),
        method_params: dict[str, dict[str, Any]] | None = None,
        reference_checkpoint: str | None = None,
        probe_size: int = 32,
        probe_seed: int | None = None,
        metrics: Sequence[str] = ("comprehensiveness", "sufficiency", "seqpg", "entropy", "special_token_share"),
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        seqpg_segment_length: int = 10,
        seqpg_segments: int = 2,
        seqpg_instances: int | None = None,
        heatmaps: int = 3,
        every_n_validations: int = 1,
        every_n_epochs: int | None = None,
        explain_batch_size: int = 16,
    ) -> None:
        unknown = [name for name in methods if name not in EXPLAINERS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known methods: {', '.join(EXPLAINERS)}")
        stray = sorted(set(method_params or {}) - set(methods))
        if stray:
            raise ValueError(f"method_params for methods that are not configured: {stray}")
        for name, params in (method_params or {}).items():
            check_explainer_params(name, params)
        if every_n_epochs is not None:
            warnings.warn("FaithfulnessCallback(every_n_epochs=...) is deprecated: it counts validation runs; use "
                          "every_n_validations", FutureWarning, stacklevel=2)
            every_n_validations = every_n_epochs
        for name, value, least in (("probe_size", probe_size, 1), ("every_n_validations", every_n_validations, 1),
                                   ("heatmaps", heatmaps, 0)):
            if value < least:
                raise ValueError(f"FaithfulnessCallback {name} must be at least {least}, got {value}")
        self.methods = list(methods)
        self.method_params = dict(method_params or {})
        self.reference_checkpoint = reference_checkpoint
        self.probe_size, self.probe_seed = probe_size, probe_seed
        self.settings = MetricSettings(list(metrics), list(fractions), seqpg_segment_length, seqpg_segments,
                                       seqpg_instances=seqpg_instances, explain_batch_size=explain_batch_size)
        self.heatmaps = heatmaps
        self.every_n_validations = every_n_validations
        self._validations = 0
        self._tokenizer = None
        self._reference: Model | None = None
        self._reference_results: dict[str, MethodResult] | None = None
        self._reference_rates: list[float] | None = None
        self._probe: Examples | None = None
        self._layout_written = False

    # --- Lightning hooks ------------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Resolves the tokenizer (the datamodule's, else the module's ``model_name_or_path``) and loads the
        reference model on rank zero (without touching the random state: loading initialises weights)."""
        self._tokenizer = getattr(trainer.datamodule, "tokenizer", None) or load_tokenizer(
            pl_module.hparams.model_name_or_path)
        if trainer.world_size > 1:  # rank-zero-only values need no sync, yet Lightning suggests sync_dist for each
            warnings.filterwarnings("ignore", r"It is recommended to use `self.log\('(faithfulness|explain_time)/",
                                    PossibleUserWarning)
        if self.reference_checkpoint and trainer.is_global_zero and self._reference is None:
            with torch.random.fork_rng(devices=[]):
                self._reference = load(self.reference_checkpoint, kind="sequence-classification")
            if self._reference.tokenizer.get_vocab() != self._tokenizer.get_vocab():
                raise ValueError(f"the reference model {self.reference_checkpoint} uses another tokenizer than the "
                                 "model being trained; the probe must mean the same tokens to both")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validations += 1
        if (self._validations - 1) % self.every_n_validations:
            return
        if trainer.is_global_zero:
            with isolated_evaluation(pl_module):
                results = self.evaluate(trainer, pl_module)
                rates = self.prediction_rates(trainer, pl_module)
            self._log(trainer, pl_module, results, rates)
        trainer.strategy.barrier("FaithfulnessCallback")

    def state_dict(self) -> dict[str, Any]:
        return {"validations": self._validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._validations = state_dict["validations"]

    # --- evaluation -----------------------------------------------------------------------------------------

    def probe(self, trainer: Trainer) -> Examples:
        """The probe examples (CPU), collated by the validation dataloader's own collate function."""
        if self._probe is None:
            loader = trainer.val_dataloaders
            loader = loader[0] if isinstance(loader, (list, tuple)) else loader
            dataset = loader.dataset
            size = min(self.probe_size, len(dataset))
            indices = (range(size) if self.probe_seed is None else torch.randperm(
                len(dataset), generator=torch.Generator().manual_seed(self.probe_seed))[:size].tolist())
            self._probe = Examples.from_batch(loader.collate_fn([dataset[i] for i in indices]))
        return self._probe

    def _settings(self, probe: Examples) -> MetricSettings:
        if probe.has_rationales and "plausibility" not in self.settings.metrics:
            return MetricSettings(**{**vars(self.settings), "metrics": [*self.settings.metrics, "plausibility"]})
        return self.settings

    def _score(self, classifier: Model, methods: list[str], probe: Examples,
               settings: MetricSettings) -> dict[str, MethodResult]:
        instances = seqpg_instances(classifier, probe, settings) if "seqpg" in settings.metrics else None
        return {method: score_method(classifier, explainer_for(classifier, method, self.method_params.get(method)),
                                     probe, instances, settings) for method in methods}

    def _classifier(self, pl_module: LightningModule) -> Model:
        model = getattr(pl_module, "model", None)
        if not isinstance(model, nn.Module):
            raise TypeError("FaithfulnessCallback needs the LightningModule to keep its transformers classifier in "
                            "`.model`")
        return Model(model, self._tokenizer, float(getattr(pl_module, "logit_scale", 1.0)),
                     link=getattr(pl_module, "link", "softmax"))

    def prediction_rates(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, list[float]]:
        """Per class, the share of probe examples predicted as it (``predicted``; ``predicted@reference`` for the
        reference model, computed once) and labelled as it (``labelled``). Call it in eval mode."""
        probe = self.probe(trainer).to(pl_module.device)
        rates = predictions(self._classifier(pl_module), probe).rates()
        if self._reference is not None and self._reference_rates is None:
            self._reference.model.to(pl_module.device)
            self._reference_rates = predictions(self._reference, probe).rates()["predicted"]
            self._reference.model.to("cpu")
        reference = {} if self._reference_rates is None else {"predicted" + REFERENCE_SUFFIX: self._reference_rates}
        return {**rates, **reference}

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, MethodResult]:
        """Results by logged method name: the configured methods on ``pl_module.model``, and the post-hoc ones on
        the reference model as ``<method>@reference``. Call it in eval mode with gradients enabled."""
        classifier = self._classifier(pl_module)
        probe = self.probe(trainer).to(pl_module.device)
        settings = self._settings(probe)
        methods = [m for m in self.methods if m != "bcos" or classifier.is_bcos]
        if len(methods) < len(self.methods):
            rank_zero_warn("FaithfulnessCallback: the model is not a B-cos model; the bcos method is skipped")
        results = self._score(classifier, methods, probe, settings)
        posthoc = [m for m in self.methods if m != "bcos"]
        if self._reference is not None and self._reference_results is None and posthoc:
            self._reference.model.to(pl_module.device)
            self._reference_results = self._score(self._reference, posthoc, probe, settings)
            self._reference.model.to("cpu")
        for method, result in (self._reference_results or {}).items():
            results[method + REFERENCE_SUFFIX] = result
        return results

    # --- logging --------------------------------------------------------------------------------------------

    def _log(self, trainer: Trainer, pl_module: LightningModule, results: dict[str, MethodResult],
             rates: dict[str, list[float]]) -> None:
        for name, shares in rates.items():
            for k, share in enumerate(shares):
                pl_module.log(f"predictions/class_{k}/{name}", share, rank_zero_only=True)
        for name, result in results.items():
            for metric, value in result.scores.items():
                if math.isfinite(value):
                    pl_module.log(f"faithfulness/{metric}/{name}", value, rank_zero_only=True)
                else:
                    rank_zero_warn(f"FaithfulnessCallback: {metric} of {name} is undefined on the probe (for seqpg: "
                                   "no correctly classified probe examples of two classes with enough tokens)")
            pl_module.log(f"explain_time/{name}", result.seconds_per_example, rank_zero_only=True)
        writers = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not self._layout_written:
            metrics = [metric for metric in SCORES if any(metric in result.scores for result in results.values())]
            for writer in writers:
                writer.add_custom_scalars(custom_scalars_layout(metrics, len(rates["labelled"])))
            self._layout_written = True
        for writer in writers:
            for index, figure in enumerate(self._figures(results)):
                writer.add_figure(f"heatmaps/example_{index}", figure, global_step=trainer.global_step)

    def _figures(self, results: Mapping[str, MethodResult]) -> Iterator:
        probe = self._probe
        for index in range(min(self.heatmaps, len(probe))):
            real = probe.attention_mask[index].bool()
            tokens = self._tokenizer.convert_ids_to_tokens(probe.input_ids[index, real].tolist())
            rows = {name: result.attributions[index, real.to(result.attributions.device)]
                    for name, result in results.items()}
            yield heatmap_figure(TokenHeatmap(tokens, rows, f"probe example {index}, label {int(probe.labels[index])}"))


def custom_scalars_layout(metrics: Sequence[str], num_classes: int = 0) -> dict[str, dict[str, list]]:
    """TensorBoard custom-scalars layout: one multiline chart per metric over all methods, one of the explanation
    times, and per class one of the predicted and labelled shares."""
    layout = {"faithfulness": {metric: ["Multiline", [rf"^faithfulness/{metric}/"]] for metric in metrics},
              "explain_time": {"seconds per example": ["Multiline", [r"^explain_time/"]]}}
    if num_classes:
        layout["predictions"] = {f"class {k}": ["Multiline", [rf"^predictions/class_{k}/"]] for k in range(num_classes)}
    return layout

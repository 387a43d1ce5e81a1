"""bcos.viz: HTML shows every token once and escaped, colours follow the sign in both renderers, PNGs are written,
word-level heatmaps merge subwords, and heatmaps of explanations hold their contributions."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest
import torch

import bcos
from bcos.viz import TokenHeatmap, colors, from_explanation, heatmap_document, heatmap_figure, write_html, write_png
from tiny_models import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOKENS = ["[CLS]", "<script>", "alert", "&", '"quote"', "film", "##s", "$5", "[SEP]"]
SCORES = {"bcos": [0.5, -2.0, 1.0, 0.0, -0.25, 4.0, -4.0, 0.1, 2.0],
          "lime <b>": [1.0, 2.0, 3.0, -4.0, 0.0, 0.5, -0.5, 0.0, 0.0]}


@pytest.fixture
def heatmap() -> TokenHeatmap:
    return TokenHeatmap(TOKENS, SCORES, title="a <i>title</i>", target="positive", prediction="positive",
                        probabilities={"negative": 0.25, "positive": 0.75})


class _Cells(HTMLParser):
    """Collects the text of the token header cells and the (score, background) of the score cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []
        self.cells: list[tuple[float, tuple[int, ...]]] = []
        self._in_token = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self._in_token = tag == "th" and attributes.get("class") == "bcos-token"
        if self._in_token:
            self.tokens.append("")
        if tag == "td":
            background = attributes["style"].removeprefix("background: rgb(").removesuffix(")")
            self.cells.append((float(attributes["data-score"]), tuple(int(c) for c in background.split(","))))

    def handle_endtag(self, tag: str) -> None:
        self._in_token = False

    def handle_data(self, data: str) -> None:
        if self._in_token:
            self.tokens[-1] += data


def parse(html: str) -> _Cells:
    parser = _Cells()
    parser.feed(html)
    return parser


def test_html_shows_every_token_exactly_once_and_escaped(heatmap):
    html = heatmap_document([heatmap], title="<title> & more")
    assert parse(html).tokens == TOKENS  # once each, in order, whatever the number of rows
    assert "<script>" not in html and html.count("&lt;script&gt;") == 1
    assert "<i>" not in html and "&lt;i&gt;title&lt;/i&gt;" in html
    assert "lime &lt;b&gt;" in html and "&amp;quot;" not in html and "&quot;quote&quot;" in html
    assert "&lt;title&gt; &amp; more" in html
    assert "prediction: positive" in html and "positive 0.750" in html and "explained: positive" in html


def test_html_cells_hold_the_scores_and_colours_follow_their_sign(heatmap):
    cells = parse(heatmap_document([heatmap])).cells
    assert [score for score, _ in cells] == [s for row in SCORES.values() for s in row]
    for score, (red, green, blue) in cells:
        if score > 0:
            assert red > blue and red > green, (score, red, green, blue)
        elif score < 0:
            assert blue > red and blue > green, (score, red, green, blue)
        else:
            assert (red, green, blue) == colors.NEUTRAL
    # per row, a larger magnitude is further from white; the row's extreme takes the end colour
    bcos_cells = cells[:len(TOKENS)]
    whiteness = {score: sum(rgb) for score, rgb in bcos_cells}
    assert whiteness[4.0] < whiteness[2.0] < whiteness[1.0] < whiteness[0.5] < whiteness[0.1]
    assert dict(bcos_cells)[4.0] == colors.POSITIVE and dict(bcos_cells)[-4.0] == colors.NEGATIVE


def test_matplotlib_uses_the_same_colour_scale():
    colormap = colors.colormap()
    for value in (-1.0, -0.5, 0.0, 0.3, 1.0):
        drawn = tuple(round(255 * channel) for channel in colormap((value + 1) / 2)[:3])
        assert max(abs(a - b) for a, b in zip(drawn, colors.rgb(value))) <= 1, value


def test_figure_cells_follow_the_sign(heatmap):
    figure = heatmap_figure(heatmap)
    image = figure.axes[0].images[0]
    grid = torch.as_tensor(image.get_array())
    assert torch.allclose(grid, torch.tensor([colors.normalise(row) for row in SCORES.values()], dtype=grid.dtype))
    rgba = torch.as_tensor(image.to_rgba(image.get_array()))
    scores = torch.tensor(list(SCORES.values()))
    assert (rgba[..., 0] > rgba[..., 2])[scores > 0].all() and (rgba[..., 2] > rgba[..., 0])[scores < 0].all()
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()][-2] == r"\$5"  # no math mode


def test_png_is_written_and_non_empty(heatmap, tmp_path):
    path = write_png([heatmap, heatmap.words({"[CLS]", "[SEP]"})], tmp_path / "sub" / "heatmap.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000


def test_write_html_writes_a_standalone_page(heatmap, tmp_path):
    path = write_html([heatmap], tmp_path / "out" / "heatmap.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http" not in html


def test_words_merge_subwords_and_sum_their_scores(heatmap):
    words = heatmap.words({"[CLS]", "[SEP]"})
    assert words.tokens == ["[CLS]", "<script>", "alert", "&", '"quote"', "films", "$5", "[SEP]"]
    assert words.rows["bcos"][5] == 0.0 and words.rows["lime <b>"][5] == 0.0
    assert words.rows["bcos"][:5] == SCORES["bcos"][:5]
    assert (words.title, words.prediction, words.probabilities) == (heatmap.title, heatmap.prediction,
                                                                    heatmap.probabilities)


def test_without_drops_columns(heatmap):
    shown = heatmap.without({"[CLS]", "[SEP]"})
    assert shown.tokens == TOKENS[1:-1]
    assert shown.rows == {label: scores[1:-1] for label, scores in SCORES.items()}
    assert shown.summary() == heatmap.summary()


def test_rows_must_fit_the_tokens():
    with pytest.raises(ValueError, match="row 'bcos' has 2 scores for 3 tokens"):
        TokenHeatmap(["a", "b", "c"], {"bcos": [1.0, 2.0]})
    with pytest.raises(ValueError, match="at least one row"):
        TokenHeatmap(["a"], {})


@pytest.fixture(scope="module")
def tokenizer():
    return bcos.load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")


def test_classification_heatmap_holds_the_contributions(tokenizer):
    model = bcos.bcosify(tiny_model("bert", "BertForSequenceClassification", num_labels=3))
    ids, mask = tiny_batch("bert")
    explanation = bcos.explain(model, ids, mask)
    labels = ["negative", "neutral", "positive"]
    heatmap = from_explanation(explanation, tokenizer, 1, labels=labels, title="example 1")
    real = mask[1].bool()
    assert heatmap.tokens == tokenizer.convert_ids_to_tokens(ids[1, real].tolist())
    assert heatmap.rows == {"bcos": explanation.contributions[1, real].double().tolist()}
    assert sum(heatmap.rows["bcos"]) == pytest.approx(float(explanation.logit[1]), rel=1e-4)
    assert heatmap.prediction == labels[int(explanation.prediction[1])] == heatmap.target
    assert list(heatmap.probabilities) == labels
    assert sum(heatmap.probabilities.values()) == pytest.approx(1.0)

    every = from_explanation(bcos.explain(model, ids, mask, target="all"), tokenizer, 1, labels=labels)
    assert list(every.rows) == labels and every.target == "every class"
    for c, label in enumerate(labels):
        assert every.rows[label] == pytest.approx(bcos.explain(model, ids, mask, target=c).contributions[1, real]
                                                  .tolist(), abs=1e-6)


def test_next_token_and_contrastive_heatmaps(tokenizer):
    model = bcos.bcosify(tiny_model("llama", "LlamaForCausalLM"))
    ids, mask = tiny_batch("llama")
    explanation = bcos.explain(model, ids, mask, target=7, foil=11)
    heatmap = from_explanation(explanation, tokenizer, 2, top_k=3)
    real = mask[2].bool()
    assert heatmap.rows["bcos"] == explanation.contributions[2, real].double().tolist()
    assert sum(heatmap.rows["bcos"]) == pytest.approx(float(explanation.logit[2]), rel=1e-4, abs=1e-6)
    name = repr(tokenizer.decode([7]))
    last = len(heatmap.tokens) - 1
    assert heatmap.target == f"{name} rather than {repr(tokenizer.decode([11]))} " \
                             f"(logits at token {last}: {heatmap.tokens[last]!r})"
    assert len(heatmap.probabilities) == 3
    assert list(heatmap.probabilities.values()) == sorted(heatmap.probabilities.values(), reverse=True)
    assert heatmap.prediction == repr(tokenizer.decode([int(explanation.prediction[2])]))
    assert "rather than" in heatmap_document([heatmap])

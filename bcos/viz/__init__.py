"""Token heatmaps of explanations: standalone HTML and matplotlib figures / PNG, sharing one colour scale.

    heatmap = bcos.viz.from_explanation(explanation, tokenizer, labels=model.config.id2label)
    bcos.viz.write_html([heatmap, heatmap.words()], "heatmap.html")
    bcos.viz.write_png(heatmap, "heatmap.png")
"""
from .figure import heatmap_figure, write_png
from .heatmap import TokenHeatmap, from_explanation
from .html import heatmap_document, heatmap_fragment, write_html

__all__ = ["TokenHeatmap", "from_explanation", "heatmap_document", "heatmap_fragment", "heatmap_figure",
           "write_html", "write_png"]

"""Lightning callbacks: faithfulness evaluation and heatmap logging on validation epochs."""
from callbacks.faithfulness import FaithfulnessCallback

__all__ = ["FaithfulnessCallback"]

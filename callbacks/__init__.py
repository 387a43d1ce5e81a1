"""Lightning callbacks: faithfulness evaluation and heatmap logging on validation runs, and the Hugging Face
export of the best model."""
from callbacks.export import HFExport
from callbacks.faithfulness import FaithfulnessCallback

__all__ = ["FaithfulnessCallback", "HFExport"]

"""Lightning callbacks: faithfulness evaluation and heatmap logging on validation runs, the Hugging Face
export of the best model, and plain progress lines for runs without a progress bar."""
from callbacks.export import HFExport
from callbacks.faithfulness import FaithfulnessCallback
from callbacks.progress import ProgressLog

__all__ = ["FaithfulnessCallback", "HFExport", "ProgressLog"]

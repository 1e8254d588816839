"""``medfed predict``: a trained model applied to new scans, written back in their own geometry."""

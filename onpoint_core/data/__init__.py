"""Data: the canonical dataset folder, the synthetic benchmark and importers of public layouts."""

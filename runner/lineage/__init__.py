"""Column lineage: of one model (`model`), and across the whole project (`project`)."""

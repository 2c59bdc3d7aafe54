"""The merge-request report as Markdown (templates), and the answers to `/diff` and `/lineage`."""

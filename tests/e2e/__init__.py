"""End to end through the web app, the broker and workers, against fake forges."""

"""What a reviewer reads about a change: the semantic SQL diff, the data diff in the warehouse, the
downstream impact, and comparisons of environments."""

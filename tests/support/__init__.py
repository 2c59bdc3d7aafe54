"""What tests share: fake forges, warehouse, repository and service helpers, fixture paths."""

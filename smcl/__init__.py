"""smcl package."""

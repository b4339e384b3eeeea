"""smmcl package."""

"""nvs_sqa package."""

"""ifas_model package."""

"""ifas_eval package."""

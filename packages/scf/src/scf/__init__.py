"""scf package."""

"""TFX module files shipped with the provider (run inside the TFX runtime only)."""

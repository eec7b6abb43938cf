"""activities layer."""

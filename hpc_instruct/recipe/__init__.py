"""recipe package."""

"""The audit checks, one small module per theme; each registers its checks on import."""

"""Security regressions: each test reproduces an attack on a real container."""

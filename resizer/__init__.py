"""Learned image resizing (Talebi & Milanfar, ICCV 2021) in JAX/Flax."""

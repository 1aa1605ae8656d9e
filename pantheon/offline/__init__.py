"""Offline stages, run on the desktop: slice, construct, export, profile, plan, pipeline."""

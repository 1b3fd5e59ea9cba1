"""Helpers for the real-browser test: a throw-away JupyterLab server and a headless Chromium."""

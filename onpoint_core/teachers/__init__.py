"""Offline point-supervised teachers: HR-Pro style (sparse actions) and TSASPC style (dense actions)."""

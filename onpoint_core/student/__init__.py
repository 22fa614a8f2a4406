"""The online student: OAT's sliding-window anchor transformer with the OnPoint modules (METHOD.md 4)."""

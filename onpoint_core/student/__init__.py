"""The online student: OAT's sliding-window anchor transformer with the OnPoint modules (docs/method.md 4)."""

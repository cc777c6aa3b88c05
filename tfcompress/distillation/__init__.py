"""tfcompress.distillation: public API of this technique (re-exported below, listed in `__all__`)."""

__all__ = []

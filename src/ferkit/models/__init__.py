"""Architectures by name. Importing this package registers every family (and imports Keras)."""

# registration side effects (mirror's layer too)
from ferkit.models import custom, fernet, mirror, transfer  # noqa: F401
from ferkit.models._registry import check_model, create_model, list_models, register_model

__all__ = ["check_model", "create_model", "list_models", "register_model"]

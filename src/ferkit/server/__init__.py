"""`ferkit serve`: a REST API and a web page over the ONNX inference path."""

from ferkit.server.app import create_app

__all__ = ["create_app"]

"""``hashpa serve``: the web page and JSON API (Starlette, served by uvicorn: pip install 'hashpa[serve]')."""

from hashpa._lazy import lazy_exports

_MODULES = {".app": "create_app serve MAX_UPLOAD_BYTES"}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()

"""AIStack Hub: the hub side (configuration, tenants, REST API, admin page, metrics, CLI)."""

__version__ = "0.1.0"

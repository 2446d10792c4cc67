"""mask-guard: a face-mask alert appliance (camera -> faces -> mouths -> tracks/votes -> alerts/counts)."""

__version__ = "0.1.0"

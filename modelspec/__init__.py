"""modelspec: a declarative, spec-driven build system for ML models."""

__version__ = "0.1.0"

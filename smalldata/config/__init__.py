"""The producer's configuration: the YAML schema, loading and validation."""
from smalldata.config.producer import ProducerConfig

__all__ = ["ProducerConfig"]

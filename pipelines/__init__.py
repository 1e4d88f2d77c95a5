"""flowaudit: continuous data-residency audit of Kafka event streams with Apache Beam."""

__version__ = "0.1.0"

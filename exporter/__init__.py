"""Prometheus exporter for mailbox migrations into OpenSRS Hosted Email."""

__version__ = "0.1.0"

"""matchrelay: CDF entity matching pipeline runs, relayed as CloudEvents on Pub/Sub."""

__version__ = "1.0.0"

"""deepcuts: a nightly batch pipeline that recommends deep cuts under a quality floor."""

__version__ = "0.1.0"

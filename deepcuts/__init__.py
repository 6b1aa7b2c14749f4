"""deepcuts: a nightly batch pipeline that recommends deep cuts under a quality floor."""

import logging as _logging

__version__ = "0.1.0"

# Great Expectations 1.x logs ~200 INFO lines while it is imported ("Skipping registering function ..."
# from its API-docs decorators, "Multiple declarations of metric ..." from its registry) whenever the
# root logger is at INFO, as Airflow's logging set-up and our CLI's are. They say nothing to us; its
# warnings still show, and its other loggers keep their levels.
for _name in ("great_expectations._docs_decorators", "great_expectations.expectations.registry"):
    _logging.getLogger(_name).setLevel(_logging.WARNING)

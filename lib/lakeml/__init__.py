"""lakeml: a Spark + Delta Lake + MLflow workflow for machine learning on a lakehouse.

The package holds all logic; ``jobs/`` are thin entry points and ``conf/`` says what runs.
"""

__version__ = "0.1.0"

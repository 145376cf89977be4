"""hcsflow: the library behind the hcsflow Snakemake workflow.

Plain functions on arrays and tables, grouped by stage. Rule scripts in ``scripts/`` unpack the
``snakemake`` object and call into this package; Snakemake puts ``scripts/`` on ``sys.path`` so
``import hcsflow`` works inside every rule's environment without installing anything.
"""

__version__ = "0.1.0"

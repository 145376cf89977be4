"""hcsflow: the library behind the hcsflow Snakemake workflow.

Plain functions on arrays and tables, one package per stage (matching ``rules/*.smk``):
``ingest``, ``segment``, ``cells`` (alignment, crops, features, labels), ``classify``, ``deep``,
``predict``, plus ``demo`` (synthetic plates) and ``cluster`` (the SLURM profile). Shared by all:
``io`` (atomic writes, readers), ``runner`` (rule logging, per-image loops, threads), ``batches``
(batched jobs), ``checks`` (cross-key config checks) and ``config_reference`` (docs/config.md from
the schema).

Rule scripts in ``scripts/`` unpack the ``snakemake`` object and call into this package; Snakemake
puts ``scripts/`` on ``sys.path`` (the Snakefile does it once for parse-time code).
"""

__version__ = "0.1.0"

"""Running on a cluster: installing the SLURM profile where Snakemake looks for it (``install``)."""

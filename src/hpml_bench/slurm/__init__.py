"""`hpml slurm`: render an sbatch script for a train command (templates/ *.sbatch, the
`slurm` config group for cluster presets), check it before anything is submitted, submit it."""

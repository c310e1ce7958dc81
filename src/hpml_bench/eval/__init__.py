"""`hpml eval`: score a trained run (or one of its exported artifacts) on a split of its data
set, or on another folder of the same layout, with the run's own preprocessing."""

"""From scores to weights: the rule registry (weighting), rule strings in configs (members),
and where the scores come from and how sure they are (scores)."""

"""Analysis of trained runs: paired comparisons on identical tasks."""

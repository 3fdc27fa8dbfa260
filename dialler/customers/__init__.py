"""The customer as an agent sees them: a context assembled from the replica and the dialler's data."""

"""Statistics, claims, figures and the report files, from the final results."""

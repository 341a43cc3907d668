"""Small shared helpers: atomic files, JSON output, progress, seeding, paths."""

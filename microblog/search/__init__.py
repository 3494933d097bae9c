"""Search: posts by their words, people by their names; the index kept by the database."""

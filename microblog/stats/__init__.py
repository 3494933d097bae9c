"""Statistics of a user's posts, counted in the background."""

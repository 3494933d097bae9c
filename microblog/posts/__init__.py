"""Posts: writing them, timelines, profiles and following."""

"""edgedepth stage package."""

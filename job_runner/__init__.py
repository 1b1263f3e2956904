"""The queued job system and the scheduling core shared by servers and jobs."""
